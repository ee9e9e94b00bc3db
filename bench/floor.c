/* The syscall floor of a cache hit on this machine: a server that, per
 * request, reads it (one recv) and writes a reply (one send) on loopback
 * TCP, and does nothing else; its CPU per request (user + system, from
 * getrusage of the server process) in two cases:
 *  - waiting: the client sends requests ahead (one process writes, another
 *    reads the replies), so each recv finds its request already there —
 *    the floor of a busy proxy;
 *  - ping-pong: one request at a time, the server waits in poll for each —
 *    what a single-client run pays on top (the sleep and the wake-up).
 *
 * usage: floor [requests, default 20000]   (bench/hit_profile.sh builds it)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
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

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 20000;
    double waiting = run(n, 1), pingpong = run(n, 0);
    printf("floor (loopback TCP, recv + send per request): %.1f µs CPU with the request waiting, "
           "%.1f µs one at a time (poll + wake-up)\n", waiting, pingpong);
    return 0;
}
