#include "epp_error.h"

const char *epp_strerror(int err)
{
    switch (err) {
    case EPP_OK:
        return "success";
    case EPP_EINVAL:
        return "invalid argument";
    case EPP_ENOMEM:
        return "out of memory";
    case EPP_ETOOBIG:
        return "too large";
    case EPP_ENOTFOUND:
        return "not found";
    case EPP_EIO:
        return "input/output error";
    case EPP_ETIMEDOUT:
        return "timed out";
    case EPP_EAGAIN:
        return "resource temporarily unavailable";
    case EPP_EUNAVAIL:
        return "dependency unavailable";
    case EPP_EUNSUPP:
        return "not supported";
    case EPP_ESTATE:
        return "invalid state";
    default:
        return "unknown error";
    }
}

int epp_error_is_retriable(int err)
{
    return err == EPP_EIO || err == EPP_ETIMEDOUT || err == EPP_EAGAIN || err == EPP_EUNAVAIL;
}
