/* fw_call over an authenticated connection, for one-shot tools (flarectl):
 * the nonces are exchanged, then the request goes out sealed and sealed
 * frames are opened until the answer is among them. */
#ifndef FLARE_AUTHCALL_H
#define FLARE_AUTHCALL_H

#include "auth.h"
#include "fwcall.h"

/* As fw_call, on a connected socket fd; 0 with *ans (fw_msg_free it), or
 * -1 with *why. */
int auth_call(const struct fw_io *io, int fd, const struct auth_key *key, const struct fw_buf *req,
	      int want, int timeout_ms, struct fw_msg *ans, const char **why);

#endif
