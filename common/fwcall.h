/* A blocking request/answer exchange of frames over a non-blocking stream
 * socket, within one deadline: the library's reactive-failover question to
 * its agent and flarectl's status request use it. The caller passes the
 * I/O functions: libflare.so its real libc functions (its core never calls
 * its own hooks), a tool the plain ones. Libc only. */
#ifndef FLARE_FWCALL_H
#define FLARE_FWCALL_H

#include "wire.h"

#include <poll.h>
#include <stdint.h>
#include <sys/types.h>

struct fw_io {
	int (*connect)(int, const struct sockaddr *, socklen_t);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*recv)(int, void *, size_t, int);
	int (*poll)(struct pollfd *, nfds_t, int);
	int (*getsockopt)(int, int, int, void *, socklen_t *);
};

/* Connects non-blocking socket fd within the deadline; 0 or -1 with *why. */
int fw_call_connect(const struct fw_io *io, int fd, const struct sockaddr *sa, socklen_t len,
		    int timeout_ms, const char **why);
/* Sends req, then reads frames into `in` (a fixed buffer, or a growable
 * one) until one whose type is `want` arrives; frames of other types
 * (heartbeats) are skipped. 0 with *ans decoded (fw_msg_free it), or -1
 * with *why. */
int fw_call(const struct fw_io *io, int fd, const struct fw_buf *req, int want, struct fw_buf *in,
	    int timeout_ms, struct fw_msg *ans, const char **why);

/* The two halves of fw_call, for exchanges of their own (control/auth):
 * sends all of data, or reads at least one more byte into `in`, before
 * the deadline (CLOCK_MONOTONIC ms); 0 or -1 with *why. */
int fw_send_all(const struct fw_io *io, int fd, const void *data, size_t len, uint64_t end_ms,
		const char **why);
int fw_recv_more(const struct fw_io *io, int fd, struct fw_buf *in, uint64_t end_ms,
		 const char **why);

#endif
