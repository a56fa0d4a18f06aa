/*
 * slimtrace gate: the traced container's entrypoint.
 *
 * The host can only place its fanotify mark once the container's overlay is mounted, that is after
 * the container started. So the container starts this program instead of the real one; it waits
 * until the host, mark in place, creates GO_FILE, then becomes the real program with execvp. The
 * gate and GO_FILE sit on a bind mount (another filesystem), so neither shows up in the trace.
 *
 * fanotify sees opens, not the stat/access/readlink calls that only check a path. When the host
 * listens on LOOKUP_SOCKET, the gate connects and waits for one word. "traced": the host's eBPF
 * programs trace this process and every one it starts (slim/adapters/bpf_lookups.py); nothing to do here.
 * "filter": the host cannot use eBPF, so the gate installs a seccomp filter (no_new_privs: no
 * privilege needed) that hands only those calls to a supervisor (SECCOMP_RET_USER_NOTIF), sends the
 * filter's listener fd to the host over that socket, and then execs: the filter covers the program
 * and every process it starts, from its first instruction. The host answers each call with
 * "continue", so the call runs as usual; its path is only recorded. Either way the program runs
 * from its first instruction traced; if anything fails it runs untraced.
 *
 * Usage: gate PROGRAM [ARG...]     built static (cc -static -Os): the image may have no libc.
 */
#define _GNU_SOURCE  /* O_PATH, AT_EMPTY_PATH */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define GO_FILE "/.slimtrace/go"
#define POLL_NS 1000000L      /* 1 ms: the app starts at most this late */
#define GIVE_UP_S 60          /* a host that never says go must not leave us hanging */
#define EXIT_GATE 125         /* the gate itself failed, like docker run's own failures */
#define EXIT_EXEC 127         /* the command could not be run, like a shell */
#define LOOKUP_SOCKET "/.slimtrace/lookups"
#define HOST_WANTS_FILTER "filter"    /* or "traced" (seccomp.py) */

#if defined(__x86_64__)
#define AUDIT_ARCH_NATIVE AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AUDIT_ARCH_NATIVE AUDIT_ARCH_AARCH64
#endif

#define ARG_LOW(i) (offsetof(struct seccomp_data, args) + (i) * sizeof(__u64))  /* little-endian */
#define MAX_FILTER 64

struct filter { struct sock_filter code[MAX_FILTER]; unsigned short len; };

static void emit(struct filter *f, struct sock_filter insn) { f->code[f->len++] = insn; }

/* A call of `nr` goes to the supervisor when bit `flag` of argument `arg` is set (set_notifies) or
 * clear: fstat() is newfstatat(fd, "", AT_EMPTY_PATH), which names no path and must stay fast. */
static void on_flag(struct filter *f, int nr, int arg, unsigned int flag, int set_notifies)
{
    const unsigned int notify = SECCOMP_RET_USER_NOTIF, allow = SECCOMP_RET_ALLOW;
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 4));
    emit(f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LOW(arg)));
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, flag, 0, 1));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, set_notifies ? notify : allow));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, set_notifies ? allow : notify));
}

/* The calls that look a path up without opening it (and O_PATH opens, which fanotify never sees). */
static void build_filter(struct filter *f)
{
    static const int always[] = {
#ifdef __NR_stat
        __NR_stat, __NR_lstat, __NR_access, __NR_readlink,
#endif
        __NR_faccessat, __NR_readlinkat, __NR_chdir,
#ifdef __NR_faccessat2
        __NR_faccessat2,
#else
        439,
#endif
    };
    const int count = sizeof always / sizeof always[0];

    f->len = 0;
    emit(f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_NATIVE, 1, 0));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    emit(f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
    on_flag(f, __NR_newfstatat, 3, AT_EMPTY_PATH, 0);
    on_flag(f, __NR_statx, 2, AT_EMPTY_PATH, 0);
    on_flag(f, __NR_openat, 2, O_PATH, 1);
#ifdef __NR_open
    on_flag(f, __NR_open, 1, O_PATH, 1);
#endif
    emit(f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
    for (int i = 0; i < count; i++)  /* a match skips the rest and the "allow" below it */
        emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, always[i], count - i, 0));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF));
}

/* One message to the host: "ok" with the listener fd attached, or why there is none. */
static void tell_host(int sock, const char *message, int fd)
{
    char control[CMSG_SPACE(sizeof fd)];
    struct iovec text = {(void *)message, strlen(message)};
    struct msghdr msg = {.msg_iov = &text, .msg_iovlen = 1};

    if (fd >= 0) {
        memset(control, 0, sizeof control);
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof fd);
        memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
    }
    sendmsg(sock, &msg, MSG_NOSIGNAL);
}

/* The host's word: 1 for "filter"; 0 for "traced", or for no word at all (the host is gone). */
static int host_asks_for_filter(int sock)
{
    const struct timeval patience = {GIVE_UP_S, 0};
    char word[16];
    ssize_t got;

    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience);
    do
        got = recv(sock, word, sizeof word - 1, 0);
    while (got < 0 && errno == EINTR);
    if (got <= 0)
        return 0;
    word[got] = '\0';
    return strcmp(word, HOST_WANTS_FILTER) == 0;
}

/* Only when the host asked for lookups (its socket exists); the program runs either way. */
static void trace_lookups(void)
{
    struct sockaddr_un address = {.sun_family = AF_UNIX, .sun_path = LOOKUP_SOCKET};
    struct filter filter;
    struct sock_fprog program;
    char why[128];
    int sock, listener;

    if (access(LOOKUP_SOCKET, F_OK) != 0)
        return;
    sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    /* Silent: the program's output is compared with the slimmed image's. The host notes the absence. */
    if (sock < 0 || connect(sock, (struct sockaddr *)&address, sizeof address) != 0)
        return;
    if (!host_asks_for_filter(sock)) {
        close(sock);
        return;
    }
    build_filter(&filter);
    program.len = filter.len;
    program.filter = filter.code;
    listener = -1;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0)
        listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &program);
    if (listener < 0) {
        snprintf(why, sizeof why, "installing the seccomp filter failed: %s", strerror(errno));
        tell_host(sock, why, -1);
    } else {
        tell_host(sock, "ok", listener);
        close(listener);
    }
    close(sock);
}

int main(int argc, char **argv)
{
    const struct timespec pause = {0, POLL_NS};
    struct timespec now;
    time_t give_up;

    if (argc < 2) {
        fputs("slimtrace gate: no command to run\n", stderr);
        return EXIT_GATE;
    }
    /* A deadline rather than a count of polls: each sleep lasts somewhat longer than asked. */
    clock_gettime(CLOCK_MONOTONIC, &now);
    give_up = now.tv_sec + GIVE_UP_S;
    while (access(GO_FILE, F_OK) != 0) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec >= give_up) {
            fprintf(stderr, "slimtrace gate: the tracer never said go (%s), giving up after %d s\n", GO_FILE, GIVE_UP_S);
            return EXIT_GATE;
        }
        nanosleep(&pause, NULL);
    }
    trace_lookups();
    /* execvp searches the container's PATH, as Docker does for an entrypoint. */
    execvp(argv[1], argv + 1);
    /* EPERM: the program carries a file capability outside the container's set (Podman grants fewer
     * capabilities than Docker: NET_RAW, MKNOD, AUDIT_WRITE). */
    fprintf(stderr, "slimtrace gate: exec %s: %s%s\n", argv[1], strerror(errno),
            errno == EPERM ? " (a file capability the container lacks? --cap-add grants it)" : "");
    return EXIT_EXEC;
}
