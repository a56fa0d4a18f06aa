/*
 * slimtrace lookupd: the host's supervisor of the gate's seccomp filter (see gate.c).
 *
 * Every call the filter stops (stat, access, readlink, chdir, O_PATH opens) waits until this program
 * answers, so answering must cost microseconds: a server may stat a file on every request. That is why
 * this loop is C and not Python. For each call it reads the path from the process's memory, makes a
 * relative path absolute against the process's directory fd or cwd (as the container sees them), lets
 * the call continue, and reports a path only the first time it sees it.
 *
 * Usage: lookupd LISTENER_FD PARENT_PID run by slim/build/lookups.py, which reads its stdout; SIGTERM ends it.
 * Output: records of three NUL-terminated fields: FOLLOW ("1" or "0"), EXECUTABLE, PATH for each new
 * path; at the end one record "calls", COUNT, "". FOLLOW is "0" when the call looks at a symlink itself.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define KEY_MAX (PATH_MAX * 2 + 2)  /* FOLLOW, then a cwd and a relative path joined */
#ifndef __NR_faccessat2
#define __NR_faccessat2 439
#endif
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS  /* Linux 6.6; older headers lack it */
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

/* Where a call keeps its path, and what turns symlink following off. */
struct shape { int path_arg, dirfd_arg, flags_arg; unsigned long nofollow; int follows; };

static int shape_of(int nr, struct shape *s)
{
    struct shape at = {1, 0, -1, 0, 1}, plain = {0, -1, -1, 0, 1};
    switch (nr) {
#ifdef __NR_stat
    case __NR_stat: case __NR_access: *s = plain; return 1;
    case __NR_lstat: case __NR_readlink: *s = plain; s->follows = 0; return 1;
    case __NR_open: *s = plain; s->flags_arg = 1; s->nofollow = O_NOFOLLOW; return 1;
#endif
    case __NR_chdir: *s = plain; return 1;
    case __NR_faccessat: *s = at; return 1;
    case __NR_readlinkat: *s = at; s->follows = 0; return 1;
    case __NR_openat: *s = at; s->flags_arg = 2; s->nofollow = O_NOFOLLOW; return 1;
    case __NR_statx: *s = at; s->flags_arg = 2; s->nofollow = AT_SYMLINK_NOFOLLOW; return 1;
    case __NR_newfstatat: case __NR_faccessat2: *s = at; s->flags_arg = 3; s->nofollow = AT_SYMLINK_NOFOLLOW; return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- the paths already reported */

static char **seen;
static size_t seen_size, seen_count;

static uint64_t hash(const char *key)
{
    uint64_t h = 1469598103934665603ULL;  /* FNV-1a */
    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 1099511628211ULL;
    return h;
}

static char **slot(char **table, size_t size, const char *key)
{
    size_t i = hash(key) & (size - 1);
    while (table[i] && strcmp(table[i], key) != 0)
        i = (i + 1) & (size - 1);
    return &table[i];
}

/* 1 if `key` is new (and now remembered). */
static int remember(const char *key)
{
    if ((seen_count + 1) * 10 > seen_size * 7) {
        size_t size = seen_size ? seen_size * 2 : 4096;
        char **table = calloc(size, sizeof *table);
        if (!table)
            return 1;  /* report again rather than lose it */
        for (size_t i = 0; i < seen_size; i++)
            if (seen[i])
                *slot(table, size, seen[i]) = seen[i];
        free(seen);
        seen = table;
        seen_size = size;
    }
    char **place = slot(seen, seen_size, key);
    if (*place)
        return 0;
    *place = strdup(key);
    seen_count++;
    return 1;
}

/* ---------------------------------------------------------------- reading the stopped process */

#define FIRST_READ 256  /* most paths are shorter: copy no more than that per call */

/* The NUL-terminated string at `address` in `pid`, never across a page boundary in one read (the
 * string may end just before an unmapped page). */
static int read_string(pid_t pid, uint64_t address, char *out, size_t size)
{
    size_t got = 0, page = (size_t)sysconf(_SC_PAGESIZE);
    while (got < size) {
        size_t want = page - (address + got) % page;
        if (got == 0 && want > FIRST_READ)
            want = FIRST_READ;
        if (want > size - got)
            want = size - got;
        struct iovec local = {out + got, want}, remote = {(void *)(uintptr_t)(address + got), want};
        ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
        if (n <= 0)
            return 0;
        if (memchr(out + got, '\0', n))
            return 1;
        got += n;
    }
    return 0;
}

static int read_link(const char *link, char *out, size_t size)
{
    ssize_t n = readlink(link, out, size - 1);
    if (n < 0)
        return 0;
    out[n] = '\0';
    return 1;
}

/* "FOLLOW/abs/path" for the call, or 0 when it names no path we can place. */
static int key_of(const struct seccomp_notif *call, char *key)
{
    struct shape s;
    char path[PATH_MAX], base[PATH_MAX], link[64];
    const __u64 *args = call->data.args;

    if (!shape_of(call->data.nr, &s) || !read_string(call->pid, args[s.path_arg], path, sizeof path) || !path[0])
        return 0;
    int follows = s.follows && !(s.flags_arg >= 0 && (args[s.flags_arg] & s.nofollow));
    if (path[0] == '/') {
        snprintf(key, KEY_MAX, "%d%s", follows, path);
        return 1;
    }
    int dirfd = s.dirfd_arg >= 0 ? (int)args[s.dirfd_arg] : AT_FDCWD;
    if (dirfd == AT_FDCWD)
        snprintf(link, sizeof link, "/proc/%u/cwd", call->pid);
    else
        snprintf(link, sizeof link, "/proc/%u/fd/%d", call->pid, dirfd);
    /* Read from the host, the link names the directory as the container sees it. */
    if (!read_link(link, base, sizeof base) || base[0] != '/' || strstr(base, " (deleted)"))
        return 0;
    snprintf(key, KEY_MAX, "%d%s%s%s", follows, base, strcmp(base, "/") ? "/" : "", path);
    return 1;
}

static void emit(const char *a, const char *b, const char *c)
{
    fwrite(a, 1, strlen(a) + 1, stdout);
    fwrite(b, 1, strlen(b) + 1, stdout);
    fwrite(c, 1, strlen(c) + 1, stdout);
}

/* ---------------------------------------------------------------- the loop */

/* 0 when the listener is unusable (not a seccomp listener, or gone). */
static int answer(int listener, unsigned long long *calls)
{
    struct seccomp_notif call;
    struct seccomp_notif_resp response;
    char key[KEY_MAX], exe[PATH_MAX], link[64];

    memset(&call, 0, sizeof call);  /* the kernel insists on a zeroed buffer */
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &call) != 0)
        return errno == EINTR || errno == ENOENT;  /* ENOENT: the process died meanwhile */
    (*calls)++;
    if (key_of(&call, key) && remember(key)) {
        snprintf(link, sizeof link, "/proc/%u/exe", call.pid);
        if (!read_link(link, exe, sizeof exe))
            exe[0] = '\0';
        /* Checked after reading: had the process died, its pid could name another by now. */
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &call.id) == 0) {
            char follow[2] = {key[0], '\0'};
            emit(follow, exe, key + 1);
            fflush(stdout);
        }
    }
    memset(&response, 0, sizeof response);
    response.id = call.id;
    response.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &response);
    return 1;
}

static volatile sig_atomic_t done;

static void finish(int signal)
{
    (void)signal;
    done = 1;
}

int main(int argc, char **argv)
{
    unsigned long long calls = 0;
    char count[32];
    /* No SA_RESTART: SIGTERM interrupts the blocking receive, and the loop ends. */
    struct sigaction on_term = {.sa_handler = finish};
    const struct sched_param lowest_realtime = {.sched_priority = 1};

    if (argc != 3) {
        fputs("usage: lookupd LISTENER_FD PARENT_PID\n", stderr);
        return 2;
    }
    sigaction(SIGTERM, &on_term, NULL);
    /* End with the slimtrace run that started us, even one killed with SIGKILL: a supervisor left behind
     * would keep its pipes open and a dead run's container waiting on it. The parent may already be gone. */
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != (pid_t)atoi(argv[2]))
        return 0;
    /* The stopped process and this loop hand the CPU to each other directly, as a pipe's reader and writer
     * would, rather than through the scheduler: a server's stat per request then costs two switches on its
     * CPU, not a wake-up of another CPU each way. Older kernels (before 6.6) refuse the flag: slower answers. */
    ioctl(atoi(argv[1]), SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP);
    /* On a busy machine the scheduler would let other processes' time slices pass before this loop runs,
     * each one a wait of milliseconds for a process stopped in a stat. At the lowest real-time priority it
     * runs at once; it only ever runs to answer, so it takes no CPU from anyone otherwise (and the kernel
     * caps real-time tasks at 95% of a CPU). Without the privilege it runs as any process. */
    sched_setscheduler(0, SCHED_FIFO, &lowest_realtime);
    /* One blocking receive per call, no poll: every syscall here is paid by a process waiting for us. */
    while (!done && answer(atoi(argv[1]), &calls))
        ;
    snprintf(count, sizeof count, "%llu", calls);
    emit("calls", count, "");
    return fflush(stdout) == 0 ? 0 : 1;
}
