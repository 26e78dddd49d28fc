/* libFuzzer target for the frame splitter and every decoder behind it: the
 * input is a byte stream as a daemon would read it from a socket. */
#include <stdint.h>
#include <stdlib.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	while (off < size) {
		struct fw_hdr h;
		const char *why;
		long n = fw_frame_check(data + off, size - off, &h, &why);
		if (n <= 0)
			break;
		if ((size_t)n > size - off || n < FW_HDR_LEN)
			abort();
		struct fw_msg m;
		fw_decode(h.type, data + off + FW_HDR_LEN, h.len, &m, &why);
		fw_msg_free(&m);
		off += (size_t)n;
	}
	return 0;
}
