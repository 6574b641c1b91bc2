/*
 * The loopback responder and client helpers the HTTP tests share: see
 * responder.h. Linked into every test binary.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "responder.h"

pid_t g_server = -1;
int g_listen = -1, g_notes = -1;

void responder_setup(void)
{
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("ALL_PROXY");
    unsetenv("all_proxy");
    g_server = -1;
    g_listen = g_notes = -1;
}

void responder_stop(void)
{
    if (g_server > 0)
        reap(g_server);
    if (g_listen >= 0)
        close(g_listen);
    if (g_notes >= 0)
        close(g_notes);
    g_server = -1;
    g_listen = g_notes = -1;
}

int listen_socket(int *port)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1024), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

void reap(pid_t pid)
{
    int status;
    if (waitpid(pid, &status, WNOHANG) == 0) {
        kill(pid, SIGTERM);
        waitpid(pid, &status, 0);
    }
}

int responder_start(responder_fn *respond, const void *script, int n)
{
    int port, fds[2];
    g_listen = listen_socket(&port);
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        alarm(30); /* never outlive a broken test */
        respond(g_listen, fds[1], script, n);
        _exit(0);
    }
    close(fds[1]);
    g_notes = fds[0];
    g_server = pid;
    return port;
}

int whole_request(const char *buf, size_t got, const char **body, long *blen)
{
    const char *end = strstr(buf, "\r\n\r\n");
    if (end == NULL)
        return 0;
    const char *cl = strcasestr(buf, "\r\ncontent-length:");
    long len = cl != NULL ? strtol(cl + 17, NULL, 10) : 0;
    if ((long)(got - (size_t)(end + 4 - buf)) < len)
        return 0;
    if (body != NULL)
        *body = end + 4;
    if (blen != NULL)
        *blen = len;
    return 1;
}

int accept_request(int lfd, char *req, size_t cap, size_t *got)
{
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        _exit(2);
    *got = 0;
    req[0] = '\0';
    for (;;) {
        ssize_t r = read(fd, req + *got, cap - 1 - *got);
        if (r <= 0)
            break;
        *got += (size_t)r;
        req[*got] = '\0';
        if (whole_request(req, *got, NULL, NULL))
            break;
    }
    return fd;
}

char op_letter(const char *req)
{
    const char *target = strstr(req, "DynamoDB_20120810.");
    return target != NULL && target[18] != '\0' ? target[18] : '?';
}

void note(int notes, char what)
{
    if (write(notes, &what, 1) != 1)
        _exit(3);
}

void send_response(int fd, int status, const char *headers, const char *body)
{
    static char out[80000];
    int len = snprintf(out, sizeof out,
                       "HTTP/1.1 %d X\r\nContent-Type: application/x-amz-json-1.0\r\n"
                       "Content-Length: %zu\r\n%s\r\n%s",
                       status, strlen(body), headers != NULL ? headers : "", body);
    if (len >= (int)sizeof out)
        len = (int)sizeof out - 1;
    for (ssize_t off = 0, w; off < len; off += w)
        if ((w = write(fd, out + off, (size_t)(len - off))) <= 0)
            break;
}

void answer_and_close(int fd, int status, const char *headers, const char *body)
{
    char all[1024];
    snprintf(all, sizeof all, "Connection: close\r\n%s", headers != NULL ? headers : "");
    send_response(fd, status, all, body);
    shutdown(fd, SHUT_WR);
    close(fd);
}

void answer_big_and_close(int fd, int status, const char *body, size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Type: application/x-amz-json-1.0\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     status, len);
    ssize_t w = 1;
    for (ssize_t off = 0; off < n && w > 0; off += w)
        w = write(fd, head + off, (size_t)(n - off));
    for (size_t off = 0; off < len && w > 0; off += (size_t)w)
        w = write(fd, body + off, len - off);
    shutdown(fd, SHUT_WR);
    close(fd);
}

/* The string value of ExpressionAttributeValues' `name` in req, into out;
 * "" when absent. Lock requests hold only hex, digits and host names. */
static void sent_value(const char *req, const char *name, char *out, size_t cap)
{
    char pat[32];
    snprintf(pat, sizeof pat, "\"%s\":{\"S\":\"", name);
    const char *p = strstr(req, pat);
    out[0] = '\0';
    if (p != NULL) {
        p += strlen(pat);
        size_t n = strcspn(p, "\"");
        snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
    }
}

const char *lock_grant(const char *req, long fence, char *out, size_t cap)
{
    char owner[128], rvn[64];
    if (strstr(req, "\"UpdateExpression\":\"SET #o = :o") != NULL) {
        sent_value(req, ":o", owner, sizeof owner);
        sent_value(req, ":r", rvn, sizeof rvn);
        snprintf(out, cap,
                 "{\"Attributes\":{\"pk\":{\"S\":\"k\"},\"lockOwner\":{\"S\":\"%s\"},"
                 "\"lockRvn\":{\"S\":\"%s\"},\"fence\":{\"N\":\"%ld\"},"
                 "\"leaseMs\":{\"N\":\"5000\"},\"expiresAt\":{\"N\":\"4102444800\"}}}",
                 owner, rvn, fence);
    } else if (strstr(req, "\"UpdateExpression\":\"SET #r = :new") != NULL) {
        sent_value(req, ":new", rvn, sizeof rvn);
        snprintf(out, cap,
                 "{\"Attributes\":{\"lockRvn\":{\"S\":\"%s\"},\"leaseMs\":{\"N\":\"5000\"},"
                 "\"expiresAt\":{\"N\":\"4102444800\"}}}", rvn);
    } else if (strstr(req, "\"UpdateExpression\":\"SET #e = :zero, #x = :r") != NULL) {
        sent_value(req, ":r", rvn, sizeof rvn);
        snprintf(out, cap,
                 "{\"Attributes\":{\"expiresAt\":{\"N\":\"0\"},\"releasedRvn\":{\"S\":\"%s\"}}}",
                 rvn);
    } else {
        snprintf(out, cap, "{}");
    }
    return out;
}

void respond_keepalive(int lfd, int notes, const void *script, int n)
{
    static char req[16384];
    const ka_step *steps = script;
    int served = 0;

    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            _exit(2);
        note(notes, 'A');
        for (;;) {
            size_t got = 0;
            req[0] = '\0';
            while (!whole_request(req, got, NULL, NULL)) {
                ssize_t r = read(fd, req + got, sizeof req - 1 - got);
                if (r <= 0)
                    break;
                got += (size_t)r;
                req[got] = '\0';
            }
            if (!whole_request(req, got, NULL, NULL))
                break; /* the client closed it */
            note(notes, op_letter(req));
            const ka_step *k = &steps[served < n ? served : n - 1];
            served++;
            if (k->status == 0)
                break;
            send_response(fd, k->status, NULL, k->body);
        }
        close(fd);
    }
}

int drain(char *notes, int cap)
{
    int n = 0, fl = fcntl(g_notes, F_GETFL);
    fcntl(g_notes, F_SETFL, fl | O_NONBLOCK);
    while (n < cap - 1 && read(g_notes, &notes[n], 1) == 1)
        n++;
    fcntl(g_notes, F_SETFL, fl);
    notes[n] = '\0';
    return n;
}

void base_config(ddbk_config *cfg)
{
    ddbk_config_init(cfg);
    cfg->region = "eu-west-1";
    cfg->access_key_id = "AKID";
    cfg->secret_access_key = SECRET;
}

void local_config(ddbk_config *cfg, char *ep, size_t cap, int port)
{
    snprintf(ep, cap, "http://127.0.0.1:%d", port);
    base_config(cfg);
    cfg->endpoint = ep;
}

ddbk_client *new_client(const ddbk_config *cfg, ddbk_error *err)
{
    ddbk_error local;
    if (err == NULL)
        err = &local;
    ddbk_client *c = ddbk_client_new(cfg, err);
    if (c == NULL)
        fail_msg("ddbk_client_new: %s: %s", err->code, err->message);
    return c;
}

const ddbk_op_stats *find_op(const ddbk_stats *s, const char *op)
{
    for (int i = 0; i < s->nops; i++)
        if (strcmp(s->ops[i].op, op) == 0)
            return &s->ops[i];
    return NULL;
}
