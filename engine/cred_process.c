/*
 * credential_process: a command from a profile, run to print credentials as
 * JSON on its stdout. The command line is split here, as the AWS CLI splits
 * it, and run with execvp: never through a shell, so nothing in it is
 * expanded, globbed or chained.
 *
 * The program is looked up in PATH before the fork, and only
 * async-signal-safe calls run between fork and exec (the host may be
 * threaded). The child runs in its own process group with stdin on /dev/null, stdout
 * on a pipe we read with poll() up to a cap, stderr inherited (it is where
 * a helper explains itself to the operator). A child that outlives its time
 * or writes past the cap is killed with its whole group: a helper that
 * forked a grandchild holding the pipe must not hang the caller.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "creds.h"

/* ------------------------------------------------------------ splitting */

void ddbk__process_argv_free(char **argv)
{
    if (argv == NULL)
        return;
    for (char **p = argv; *p != NULL; p++)
        free(*p);
    free(argv);
}

/* Appends the word in w (wlen bytes) to *argv. -1 on OOM. */
static int push_word(char ***argv, size_t *n, size_t *cap, const char *w, size_t wlen)
{
    if (*n + 2 > *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        char **na = realloc(*argv, nc * sizeof *na);
        if (na == NULL)
            return -1;
        *argv = na;
        *cap = nc;
        na[*n] = NULL; /* freeable as it is if the copy below fails */
    }
    char *s = malloc(wlen + 1);
    if (s == NULL)
        return -1;
    memcpy(s, w, wlen);
    s[wlen] = '\0';
    (*argv)[(*n)++] = s;
    (*argv)[*n] = NULL;
    return 0;
}

/* The rules (shlex in POSIX mode, which the AWS CLI uses): blanks separate
 * words; '...' is literal; "..." groups, a backslash in it escapes only " \
 * $ ` and newline; outside quotes a backslash escapes the next character.
 * Quotes glue onto the word around them (a"b c"d is one word). */
int ddbk__process_split(const char *command, char ***argv, ddbk_error *err)
{
    size_t len = command ? strlen(command) : 0, n = 0, cap = 0, wlen = 0;
    char *w = malloc(len + 1);
    int in_word = 0;

    *argv = NULL;
    if (w == NULL)
        goto oom;
    for (size_t i = 0; i < len; i++) {
        char ch = command[i];
        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
            if (in_word && push_word(argv, &n, &cap, w, wlen) != 0)
                goto oom;
            in_word = 0;
            wlen = 0;
        } else if (ch == '\'') {
            in_word = 1;
            for (i++; i < len && command[i] != '\''; i++)
                w[wlen++] = command[i];
            if (i >= len) {
                ddbk_error_set(err, "InvalidArgument", 0,
                               "credential_process: unterminated single quote");
                goto fail;
            }
        } else if (ch == '"') {
            in_word = 1;
            for (i++; i < len && command[i] != '"'; i++) {
                if (command[i] == '\\' && i + 1 < len &&
                    strchr("\"\\$`\n", command[i + 1]) != NULL)
                    i++;
                w[wlen++] = command[i];
            }
            if (i >= len) {
                ddbk_error_set(err, "InvalidArgument", 0,
                               "credential_process: unterminated double quote");
                goto fail;
            }
        } else if (ch == '\\') {
            in_word = 1;
            if (i + 1 < len)
                w[wlen++] = command[++i];
        } else {
            in_word = 1;
            w[wlen++] = ch;
        }
    }
    if (in_word && push_word(argv, &n, &cap, w, wlen) != 0)
        goto oom;
    free(w);
    if (n == 0) {
        ddbk_error_set(err, "InvalidArgument", 0, "credential_process: empty command");
        ddbk__process_argv_free(*argv);
        *argv = NULL;
        return -1;
    }
    return 0;
oom:
    ddbk_error_set(err, "OutOfMemory", 0, "out of memory splitting credential_process");
fail:
    free(w);
    ddbk__process_argv_free(*argv);
    *argv = NULL;
    return -1;
}

/* ------------------------------------------------------------ running */

static long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Kills the child's group and reaps the child. */
static void kill_reap(pid_t pid)
{
    int st;
    kill(-pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
}

/* The file execvp would run for name, found here in the parent: execvp
 * is not async-signal-safe (it may allocate), execv is. 0 with path
 * filled, -1 when there is no such executable. */
static int find_program(const char *name, char *path, size_t cap)
{
    const char *dirs = getenv("PATH"), *p;

    if (strchr(name, '/') != NULL) {
        if (strlen(name) >= cap)
            return -1;
        memcpy(path, name, strlen(name) + 1);
        return 0;
    }
    if (dirs == NULL || *dirs == '\0')
        dirs = "/usr/local/bin:/bin:/usr/bin";
    for (p = dirs;; p++) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        /* An empty PATH entry means the current directory, as for execvp. */
        int w = n == 0 ? snprintf(path, cap, "./%s", name)
                       : snprintf(path, cap, "%.*s/%s", (int)n, p, name);
        if (w > 0 && (size_t)w < cap && access(path, X_OK) == 0)
            return 0;
        if (end == NULL)
            return -1;
        p = end;
    }
}

int ddbk__process_run(char *const *argv, long timeout_ms, size_t max_out, ddbk_buf *out,
                      const char **what)
{
    int pipefd[2], nullfd, st;
    pid_t pid;
    long deadline;
    char chunk[4096], prog[4096];
    sigset_t none;

    *what = NULL;
    if (argv == NULL || argv[0] == NULL) {
        *what = "empty command";
        return -1;
    }
    if (find_program(argv[0], prog, sizeof prog) != 0) {
        *what = "could not be started (not found in PATH, or not executable)";
        return -1;
    }
    sigemptyset(&none);
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        *what = "could not make a pipe";
        return -1;
    }
    nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nullfd < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        *what = "could not open /dev/null";
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        close(nullfd);
        *what = "could not fork";
        return -1;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls from here to exec: the parent may
         * be threaded. dup2 clears O_CLOEXEC on the targets. */
        setpgid(0, 0);
        /* What the host blocked or ignored (a server ignores SIGPIPE) is
         * not the helper's business. */
        signal(SIGPIPE, SIG_DFL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (dup2(nullfd, 0) < 0 || dup2(pipefd[1], 1) < 0)
            _exit(126);
        execv(prog, argv);
        _exit(127);
    }
    /* Also from the parent, so a kill right away reaches the group. */
    setpgid(pid, pid);
    close(pipefd[1]);
    close(nullfd);

    deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        long left = deadline - mono_ms();
        struct pollfd p = {.fd = pipefd[0], .events = POLLIN};
        if (left <= 0) {
            *what = "timed out";
            goto killed;
        }
        int r = poll(&p, 1, (int)(left > 1000000 ? 1000000 : left));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            *what = "poll failed";
            goto killed;
        }
        if (r == 0)
            continue;
        ssize_t got = read(pipefd[0], chunk, sizeof chunk);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got < 0) {
            *what = "reading its output failed";
            goto killed;
        }
        if (got == 0)
            break;
        if (out->len + (size_t)got > max_out || ddbk_buf_append(out, chunk, (size_t)got) != 0) {
            *what = "wrote more output than allowed";
            goto killed;
        }
    }
    close(pipefd[0]);
    /* stdout closed: the child is ending; wait for it within what is left
     * of its time. */
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            *what = "could not wait for it";
            return -1;
        }
        if (mono_ms() >= deadline) {
            kill_reap(pid);
            *what = "timed out";
            return -1;
        }
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (WIFSIGNALED(st)) {
        *what = "killed by a signal";
        return -1;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
        *what = "could not be started (not found?)";
        return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
killed:
    close(pipefd[0]);
    kill_reap(pid);
    return -1;
}
