/*
 * What the C tests that make calls over HTTP share (test_client, test_keeper,
 * test_loop): a loopback responder forked by the test, the pieces its
 * request loop is made of, and the client helpers around it. Each test file
 * keeps its own loop: one connection at a time with Connection: close
 * (test_client, test_keeper), or every connection polled and kept alive
 * (test_loop).
 *
 * The child writes notes on a pipe (g_notes on the test's side); the test
 * waits on them, never on a sleep. responder_stop, from a test's teardown,
 * reaps the child and closes what it left open, so a failed assertion
 * leaves no responder behind.
 */
#ifndef DDBK_TEST_RESPONDER_H
#define DDBK_TEST_RESPONDER_H

#include <stddef.h>
#include <sys/types.h>

#include "ddbkit.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzzSECRETzz"

#define ISE_BODY "{\"__type\":\"com.amazonaws.dynamodb.v20120810#InternalServerError\"," \
                 "\"message\":\"Internal server error\"}"
#define CCF_TYPE "\"__type\":\"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException\""

/* The responder child, the socket it accepts on and the read end of its
 * notes pipe; -1 when none. */
extern pid_t g_server;
extern int g_listen, g_notes;

/* The child's request loop: accepts on lfd, answers from the n entries of
 * script (an array of the test file's own type), writes notes on notes. It
 * may return (the child then exits 0). */
typedef void responder_fn(int lfd, int notes, const void *script, int n);

/* For a test's setup: no proxy variables, no responder. */
void responder_setup(void);

/* Reaps the responder (killing it if it still runs) and closes g_listen and
 * g_notes. */
void responder_stop(void);

/* A socket listening on a free loopback port, returned in *port. */
int listen_socket(int *port);

/* Waits for pid, killing it first if it has not exited. */
void reap(pid_t pid);

/* Forks a child that runs respond on a new listening socket (g_listen) with
 * a notes pipe (g_notes); returns its port. The child never outlives 30 s. */
int responder_start(responder_fn *respond, const void *script, int n);

/* Whether buf (got bytes, NUL-terminated) holds a whole request: headers,
 * then Content-Length bytes of body. If so sets *body and *blen (may be
 * NULL) and returns 1; 0 while more is to come. */
int whole_request(const char *buf, size_t got, const char **body, long *blen);

/* Accepts the next connection on lfd (the child exits 2 when it cannot) and
 * reads one request from it into req (NUL-terminated, its length in *got):
 * all of it, unless the peer stops sending first. Returns the connection. */
int accept_request(int lfd, char *req, size_t cap, size_t *got);

/* The first letter of the request's operation (X-Amz-Target), or '?'. */
char op_letter(const char *req);

/* Writes one note on the pipe (the child exits 3 when it cannot). */
void note(int notes, char what);

/* Writes a response: status, Content-Type, Content-Length, then headers
 * (lines ending in \r\n, may be NULL), then body. */
void send_response(int fd, int status, const char *headers, const char *body);

/* send_response with Connection: close before headers, then closes fd. */
void answer_and_close(int fd, int status, const char *headers, const char *body);

/* answer_and_close for a body of any size (len bytes, may hold NULs). */
void answer_big_and_close(int fd, int status, const char *body, size_t len);

/* The success body a real service gives a lock write of the request req (a
 * whole HTTP request as accept_request read it), with the attributes that
 * prove the write: an acquire's owner, record version and `fence`
 * (ALL_NEW), a renew's new record version, a release's releasedRvn
 * (UPDATED_NEW). Into out (cap bytes); "{}" when req is no lock write. */
const char *lock_grant(const char *req, long fence, char *out, size_t cap);

/* The notes written so far and not yet read, into notes (NUL-terminated,
 * at most cap - 1); returns how many. */
int drain(char *notes, int cap);

/* A keep-alive server for one client at a time: the i-th request (over any
 * connection) gets the i-th step (the last one again once they run out).
 * A step with status > 0 answers it and keeps the connection open; status 0
 * reads the request whole and closes the connection with no answer (what a
 * server that applied the request and then lost its answer looks like).
 * Notes: 'A' per connection accepted, then the operation's first letter per
 * request, written before the step is taken. Pass it to responder_start
 * with an array of ka_step. */
typedef struct ka_step {
    int status;
    const char *body;
} ka_step;
void respond_keepalive(int lfd, int notes, const void *script, int n);

/* A config that works: explicit region and keys, no endpoint. */
void base_config(ddbk_config *cfg);

/* base_config with the endpoint http://127.0.0.1:port, written into ep. */
void local_config(ddbk_config *cfg, char *ep, size_t cap, int port);

/* ddbk_client_new, failing the test when it fails; err may be NULL. */
ddbk_client *new_client(const ddbk_config *cfg, ddbk_error *err);

/* The stats of op in s, or NULL. */
const ddbk_op_stats *find_op(const ddbk_stats *s, const char *op);

#endif
