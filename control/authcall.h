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

/* An operator's request to one manager (flarectl; a manager asking the
 * others for their drains): a HELLO as operator, then a request of `type`
 * (STATUS_REQ with format json, or COMMAND with text), over an
 * authenticated connection when key is set. The answer's text (malloc'd),
 * or NULL with *why; *refused when the manager answered with an error. */
char *authcall_ask(const struct fw_io *io, const struct flare_addr *a, const struct auth_key *key,
		   uint8_t type, int json, const char *command, int timeout_ms, const char **why,
		   int *refused);

#endif
