/* bench/nodelay.c: an LD_PRELOAD shim that sets TCP_NODELAY on every socket a server accepts.
 * The test S3 server (s3s-fs) leaves Nagle's algorithm on; this shows what the S3 origin reads
 * at from a server that turns it off, as real S3 servers do (see bench/RESULTS.md, "Origins"):
 *   cc -shared -fPIC -o target/nodelay.so bench/nodelay.c -ldl
 *   LD_PRELOAD=$PWD/target/nodelay.so cargo run --release -p musicfs-fetchd --example origin_bench -- s3
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static int nodelay(int fd)
{
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails harmlessly off TCP */
    return fd;
}

int accept(int s, struct sockaddr *addr, socklen_t *len)
{
    static int (*real)(int, struct sockaddr *, socklen_t *);
    if (!real)
        real = dlsym(RTLD_NEXT, "accept");
    return nodelay(real(s, addr, len));
}

int accept4(int s, struct sockaddr *addr, socklen_t *len, int flags)
{
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    if (!real)
        real = dlsym(RTLD_NEXT, "accept4");
    return nodelay(real(s, addr, len, flags));
}
