/*
 * slimtrace gate: the traced container's entrypoint.
 *
 * The host can only place its fanotify mark once the container's overlay is mounted, that is after
 * the container started. So the container starts this program instead of the real one; it waits
 * until the host, mark in place, creates GO_FILE, then becomes the real program with execvp. The
 * gate and GO_FILE sit on a bind mount (another filesystem), so neither shows up in the trace.
 *
 * Usage: gate PROGRAM [ARG...]     built static (cc -static -Os): the image may have no libc.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GO_FILE "/.slimtrace/go"
#define POLL_NS 1000000L      /* 1 ms: the app starts at most this late */
#define GIVE_UP_S 60          /* a host that never says go must not leave us hanging */
#define EXIT_GATE 125         /* the gate itself failed, like docker run's own failures */
#define EXIT_EXEC 127         /* the command could not be run, like a shell */

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
    /* execvp searches the container's PATH, as Docker does for an entrypoint. */
    execvp(argv[1], argv + 1);
    /* EPERM: the program carries a file capability outside the container's set (Podman grants fewer
     * capabilities than Docker: NET_RAW, MKNOD, AUDIT_WRITE). */
    fprintf(stderr, "slimtrace gate: exec %s: %s%s\n", argv[1], strerror(errno),
            errno == EPERM ? " (a file capability the container lacks? --cap-add grants it)" : "");
    return EXIT_EXEC;
}
