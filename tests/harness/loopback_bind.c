/*
 * loopback_bind.so: an LD_PRELOAD shim that keeps a server on loopback.
 *
 * DynamoDB Local has no option to choose the address it listens on and
 * binds the wildcard address.  Loaded with LD_PRELOAD, this wraps bind(2):
 *
 *   AF_INET  bind to INADDR_ANY   (0.0.0.0) becomes 127.0.0.1
 *   AF_INET6 bind to in6addr_any  (::)      becomes ::1
 *
 * Every other bind (a specific address, AF_UNIX, ...) passes through
 * unchanged.  The port is kept.  Run Java with
 * -Djava.net.preferIPv4Stack=true so it uses AF_INET sockets (a dual-stack
 * AF_INET6 socket bound to ::1 would not accept IPv4 connections to
 * 127.0.0.1).
 *
 * Build: gcc -shared -fPIC -O2 -Wall -Wextra -Werror \
 *            -o build/loopback_bind.so tests/harness/loopback_bind.c -ldl
 * (also clean with -std=c11 -D_GNU_SOURCE, and with clang).
 *
 * Set LOOPBACK_BIND_DEBUG=1 in the environment to log each rewrite to
 * stderr.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* RTLD_NEXT */
#endif
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

static bind_fn real_bind_fn(void)
{
    static bind_fn fn;
    if (fn == NULL) {
        void *sym = dlsym(RTLD_NEXT, "bind");
        /* memcpy: ISO C has no object-to-function pointer cast. */
        memcpy(&fn, &sym, sizeof fn);
    }
    return fn;
}

/* Resolve the real bind() when the library loads, before any thread of the
 * program can call it; real_bind_fn() stays as the fallback for a bind()
 * that runs before this constructor. */
__attribute__((constructor)) static void loopback_bind_init(void)
{
    (void)real_bind_fn();
}

static int debug_on(void)
{
    const char *v = getenv("LOOPBACK_BIND_DEBUG");
    return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    bind_fn real = real_bind_fn();
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    if (addr == NULL) {
        return real(fd, addr, len);
    }

    if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in sin;
        memcpy(&sin, addr, sizeof sin);
        if (sin.sin_addr.s_addr == htonl(INADDR_ANY)) {
            sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (debug_on()) {
                fprintf(stderr, "loopback_bind: fd %d AF_INET 0.0.0.0:%u -> 127.0.0.1\n",
                        fd, (unsigned)ntohs(sin.sin_port));
            }
            return real(fd, (const struct sockaddr *)&sin, (socklen_t)sizeof sin);
        }
    } else if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 sin6;
        memcpy(&sin6, addr, sizeof sin6);
        if (memcmp(&sin6.sin6_addr, &in6addr_any, sizeof in6addr_any) == 0) {
            sin6.sin6_addr = in6addr_loopback;
            if (debug_on()) {
                fprintf(stderr, "loopback_bind: fd %d AF_INET6 [::]:%u -> [::1]\n",
                        fd, (unsigned)ntohs(sin6.sin6_port));
            }
            return real(fd, (const struct sockaddr *)&sin6, (socklen_t)sizeof sin6);
        }
    }
    return real(fd, addr, len);
}
