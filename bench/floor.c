/* The syscall floor of a cache hit on this machine: a server that, per
 * request, reads it (one recv) and writes a reply (one send) on loopback
 * TCP, and does nothing else; its CPU per request (user + system, from
 * getrusage of the server process) in two cases:
 *  - waiting: the client sends requests ahead (one process writes, another
 *    reads the replies), so each recv finds its request already there —
 *    the floor of a busy proxy;
 *  - ping-pong: one request at a time, the server waits in poll for each —
 *    what a single-client run pays on top (the sleep and the wake-up).
 * and, with `loaded`, the floor of an event-loop server under a load like
 * sysbench's: THREADS server threads, each with its own epoll set (level
 * triggered: epoll_wait, one recv, one send per request — the syscalls a
 * proxy hit makes), CLIENTS client threads in another process, each
 * sending one request, reading the reply and spending THINK_US of CPU
 * before the next (sysbench's own work per query), all on this machine's
 * cores. CPU of the server threads only (getrusage RUSAGE_THREAD). With
 * `unix` after THINK_US, the same over a Unix socket (what a client of the
 * proxy's `proxy.socket` pays for).
 *
 * usage: floor [requests, default 20000]   (bench/hit_profile.sh builds it)
 *        floor loaded CLIENTS THREADS SECONDS THINK_US [unix]   (bench/cache.sh)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <time.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define REQ 37   /* a COM_STMT_EXECUTE of one int parameter */
#define REPLY 200 /* a one-row result set */

static void die(const char *what) { perror(what); exit(1); }

static void full(int fd, char *buf, size_t n) {
    for (size_t got = 0; got < n;) {
        ssize_t r = recv(fd, buf + got, n - got, 0);
        if (r <= 0) die("recv");
        got += (size_t)r;
    }
}

/* CPU µs per request of a server answering n requests from a client
 * that sends ahead (`ahead`) or one at a time. */
static double run(long n, int ahead) {
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&a, &len))
        die("listen");
    pid_t server = fork();
    if (server == 0) {
        int s = accept(l, NULL, NULL);
        char req[REQ], reply[REPLY];
        memset(reply, 'x', sizeof reply);
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct pollfd p = {.fd = s, .events = POLLIN};
        for (long i = 0; i < n; i++) {
            if (!ahead && poll(&p, 1, -1) != 1) die("poll");
            full(s, req, REQ);
            if (send(s, reply, REPLY, 0) != REPLY) die("send");
        }
        exit(0);
    }
    close(l);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&a, sizeof a)) die("connect");
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char req[REQ], reply[REPLY];
    memset(req, 'q', sizeof req);
    pid_t writer = ahead ? fork() : -1;
    if (writer == 0) {
        for (long i = 0; i < n; i++)
            if (send(c, req, REQ, 0) != REQ) die("send");
        exit(0);
    }
    for (long i = 0; i < n; i++) {
        if (!ahead && send(c, req, REQ, 0) != REQ) die("send");
        full(c, reply, REPLY);
    }
    close(c);
    struct rusage before, after;
    int status;
    if (ahead) waitpid(writer, &status, 0);
    /* Earlier children's CPU (and the writer's) is not this server's. */
    getrusage(RUSAGE_CHILDREN, &before);
    waitpid(server, &status, 0);
    getrusage(RUSAGE_CHILDREN, &after);
#define US(r) (((r).ru_utime.tv_sec + (r).ru_stime.tv_sec) * 1e6 + (r).ru_utime.tv_usec + (r).ru_stime.tv_usec)
    return (US(after) - US(before)) / n;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

struct server { int ep, conns; long served; double user, sys; long vcs, ivcs; };

/* One server thread: answers every complete request on its connections
 * until all of them are closed. */
static void *serve(void *arg) {
    struct server *sv = arg;
    struct rusage r0, r1;
    getrusage(RUSAGE_THREAD, &r0);
    char reply[REPLY], buf[4096];
    memset(reply, 'x', sizeof reply);
    static __thread int partial[65536];
    struct epoll_event ev[64];
    while (sv->conns > 0) {
        int k = epoll_wait(sv->ep, ev, 64, -1);
        if (k < 0) die("epoll_wait");
        for (int i = 0; i < k; i++) {
            int fd = ev[i].data.fd;
            ssize_t got = recv(fd, buf, sizeof buf, 0);
            if (got <= 0) { close(fd); sv->conns--; continue; }
            partial[fd] += (int)got;
            for (; partial[fd] >= REQ; partial[fd] -= REQ, sv->served++)
                if (send(fd, reply, REPLY, 0) != REPLY) die("send");
        }
    }
    getrusage(RUSAGE_THREAD, &r1);
#define TV(t) ((t).tv_sec * 1e6 + (t).tv_usec)
    sv->user = TV(r1.ru_utime) - TV(r0.ru_utime);
    sv->sys = TV(r1.ru_stime) - TV(r0.ru_stime);
    sv->vcs = r1.ru_nvcsw - r0.ru_nvcsw;
    sv->ivcs = r1.ru_nivcsw - r0.ru_nivcsw;
    return NULL;
}

/* Where the loaded server listens: loopback TCP or a Unix socket. */
static struct sockaddr_storage listen_addr;
static socklen_t listen_len;
static double think_s, until_s;

static void *client(void *arg) {
    (void)arg;
    int c = socket(listen_addr.ss_family, SOCK_STREAM, 0), one = 1;
    if (c < 0 || connect(c, (struct sockaddr *)&listen_addr, listen_len)) die("connect");
    if (listen_addr.ss_family == AF_INET) setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char req[REQ], reply[REPLY];
    memset(req, 'q', sizeof req);
    while (now_s() < until_s) {
        if (send(c, req, REQ, 0) != REQ) die("send");
        full(c, reply, REPLY);
        for (double t = now_s() + think_s; now_s() < t;) {}
    }
    close(c);
    return NULL;
}

/* A listening socket on loopback TCP (any port) or on a fresh Unix socket
 * path; its address is left in listen_addr. */
static int listen_on(int unix_socket, int backlog) {
    int l;
    if (unix_socket) {
        struct sockaddr_un *u = (struct sockaddr_un *)&listen_addr;
        u->sun_family = AF_UNIX;
        snprintf(u->sun_path, sizeof u->sun_path, "/tmp/sqlcache-floor.%d.sock", (int)getpid());
        unlink(u->sun_path);
        listen_len = sizeof *u;
        l = socket(AF_UNIX, SOCK_STREAM, 0);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&listen_addr;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        listen_len = sizeof *a;
        l = socket(AF_INET, SOCK_STREAM, 0);
    }
    if (l < 0 || bind(l, (struct sockaddr *)&listen_addr, listen_len) || listen(l, backlog) ||
        getsockname(l, (struct sockaddr *)&listen_addr, &listen_len))
        die("listen");
    return l;
}

/* The event-loop floor under load (see the header). */
static int loaded(int clients, int threads, double secs, double think_us, int unix_socket) {
    int l = listen_on(unix_socket, clients), one = 1;
    if (fork() == 0) {
        think_s = think_us / 1e6;
        until_s = now_s() + secs;
        pthread_t t[clients];
        for (int i = 0; i < clients; i++) pthread_create(&t[i], NULL, client, NULL);
        for (int i = 0; i < clients; i++) pthread_join(t[i], NULL);
        exit(0);
    }
    struct server sv[threads];
    memset(sv, 0, sizeof sv);
    for (int i = 0; i < threads; i++)
        if ((sv[i].ep = epoll_create1(0)) < 0) die("epoll_create1");
    for (int i = 0; i < clients; i++) {
        int s = accept(l, NULL, NULL);
        if (s < 0 || s >= 65536) die("accept");
        if (!unix_socket) setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(s, F_SETFL, O_NONBLOCK);
        struct epoll_event e = {.events = EPOLLIN, .data.fd = s};
        if (epoll_ctl(sv[i % threads].ep, EPOLL_CTL_ADD, s, &e)) die("epoll_ctl");
        sv[i % threads].conns++;
    }
    pthread_t t[threads];
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, serve, &sv[i]);
    long served = 0;
    double user = 0, sys = 0;
    long vcs = 0, ivcs = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        served += sv[i].served, user += sv[i].user, sys += sv[i].sys;
        vcs += sv[i].vcs, ivcs += sv[i].ivcs;
    }
    wait(NULL);
    if (unix_socket) unlink(((struct sockaddr_un *)&listen_addr)->sun_path);
    if (served == 0) { fprintf(stderr, "no request served\n"); return 1; }
    printf("floor (%s, epoll_wait + recv + send per request, %d clients, %d threads): "
           "%.1f µs CPU per request (user %.1f, sys %.1f), %.0f requests/s, "
           "context switches per request %.2f (voluntary %.2f)\n",
           unix_socket ? "Unix socket" : "loopback TCP", clients, threads,
           (user + sys) / served, user / served, sys / served, served / secs,
           (double)(vcs + ivcs) / served, (double)vcs / served);
    return 0;
}

int main(int argc, char **argv) {
    if ((argc == 6 || argc == 7) && strcmp(argv[1], "loaded") == 0)
        return loaded(atoi(argv[2]), atoi(argv[3]), atof(argv[4]), atof(argv[5]),
                      argc == 7 && strcmp(argv[6], "unix") == 0);
    long n = argc > 1 ? atol(argv[1]) : 20000;
    double waiting = run(n, 1), pingpong = run(n, 0);
    printf("floor (loopback TCP, recv + send per request): %.1f µs CPU with the request waiting, "
           "%.1f µs one at a time (poll + wake-up)\n", waiting, pingpong);
    return 0;
}
