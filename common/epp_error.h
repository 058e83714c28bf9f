/* Error codes shared by every epp module.
 *
 * Functions return 0 on success and a negative EPP_E* code on failure. Retriable failures
 * (the same call may succeed later: a dependency is down, a queue is full) and permanent ones
 * (the input itself is wrong) have different codes, because the consumer must retry the one and
 * dead-letter the other. epp_error_is_retriable() draws that line in one place. */
#ifndef EPP_ERROR_H
#define EPP_ERROR_H

enum {
    EPP_OK = 0,
    EPP_EINVAL = -1,    /* permanent: the input is malformed or out of bounds */
    EPP_ENOMEM = -2,    /* allocation failed */
    EPP_ETOOBIG = -3,   /* permanent: the input exceeds a size limit */
    EPP_ENOTFOUND = -4, /* permanent: no such thing */
    EPP_EIO = -5,       /* retriable: an I/O or connection failure */
    EPP_ETIMEDOUT = -6, /* retriable: a deadline passed */
    EPP_EAGAIN = -7,    /* retriable: a queue or limit is full, try later */
    EPP_EUNAVAIL = -8,  /* retriable: a dependency (Kafka, Postgres) is unavailable */
    EPP_EUNSUPP = -9,   /* permanent: an unsupported request (media type, encoding) */
    EPP_ESTATE = -10,   /* programmer error: call made in the wrong state */
};

/* A static, human-readable description of err; never NULL. */
const char *epp_strerror(int err);

/* 1 when err is a failure worth retrying later, 0 otherwise. */
int epp_error_is_retriable(int err);

#endif
