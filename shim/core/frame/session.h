/* A framed connection's session log, replayed on a new connection. */
#ifndef FLARE_SESSION_H
#define FLARE_SESSION_H

#include "conn/conn.h"
#include "frame/frame.h"

#include <stdint.h>

/* ---- session.c: a framed connection's session state, replayed ---- */
int session_pending(struct fconn *fc);
/* Replays the session log on connected socket fd, checking each reply; 0,
 * or -1 (logged) when the new connection must not be used. */
int session_replay(struct fconn *fc, int fd, int timeout_ms, const char *replica);
/* The same without blocking, for an asynchronous heal: start (or start
 * over on another socket), then step: 1 while under way (fd not ready),
 * 0 done, -1 (logged) when the new connection must not be used. [claim] */
void session_async_start(struct fconn *fc);
/* One entry of the log at off: the command, and the reply the program got;
 * and whether a replica's reply to it is the same (logged when not). */
struct sess_entry {
	const uint8_t *cmd, *rep;
	uint32_t req, rep_len, next;
	int whole;
};
void session_entry_at(const uint8_t *log, uint32_t off, struct sess_entry *e);
int session_same_reply(const struct sess_entry *e, const uint8_t *got, uint32_t got_len,
		       uint8_t rflags, const char *replica);
/* Feeds n bytes of a session command's reply to its framer f, keeping its
 * first bytes in got: 0 while it goes on, 1 when it ended with the last
 * byte, -1 when it cannot be read or more follows it. */
int session_reply_feed(struct fr_rep *f, const uint8_t *p, size_t n, uint8_t *got,
		       uint32_t *got_len, uint8_t *rflags);
int session_async_step(struct fconn *fc, int fd);

#endif
