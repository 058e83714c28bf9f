/* bench_args: the numbers on the bench programs' command lines (bench_http_echo,
 * bench_proto_*, bench_kafka_floor): strict decimal within bounds, or the program stops with
 * exit status 2 and a message naming the flag. s may be NULL (a flag given last, without its
 * value). */
#ifndef BENCH_ARGS_H
#define BENCH_ARGS_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static inline long bench_arg_long(const char *prog, const char *flag, const char *s, long lo,
                                  long hi)
{
    char *end = NULL;
    errno = 0;
    long v = s != NULL ? strtol(s, &end, 10) : 0;
    if (s == NULL || end == s || *end != '\0' || errno != 0 || v < lo || v > hi) {
        fprintf(stderr, "%s: %s needs a whole number in %ld..%ld\n", prog, flag, lo, hi);
        exit(2);
    }
    return v;
}

static inline double bench_arg_double(const char *prog, const char *flag, const char *s, double lo,
                                      double hi)
{
    char *end = NULL;
    errno = 0;
    double v = s != NULL ? strtod(s, &end) : 0;
    if (s == NULL || end == s || *end != '\0' || errno != 0 || !(v >= lo && v <= hi)) {
        fprintf(stderr, "%s: %s needs a number in %g..%g\n", prog, flag, lo, hi);
        exit(2);
    }
    return v;
}

#endif
