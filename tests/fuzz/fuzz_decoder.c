/* libFuzzer target for one message decoder, chosen at build time with
 * -DFUZZ_DECODER=hello|register|report|rank|text|query. A decoded message
 * is re-encoded and decoded again: it must survive the round trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

#define fuzz_type_hello FW_HELLO
#define fuzz_type_register FW_REGISTER
#define fuzz_type_report FW_REPORT
#define fuzz_type_rank FW_RANK
#define fuzz_type_text FW_STATUS_RESP
#define fuzz_type_query FW_QUERY_REQ
#define CAT(a, b) a##b
#define TYPE_OF(d) CAT(fuzz_type_, d)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fw_msg m, again;
	const char *why;
	if (fw_decode(TYPE_OF(FUZZ_DECODER), data, size, &m, &why) == 0) {
		struct fw_buf b = {0};
		struct fw_hdr h;
		if (fw_encode(&b, &m) != 0 || fw_frame_check(b.data, b.len, &h, &why) <= 0 ||
		    fw_decode(h.type, b.data + FW_HDR_LEN, h.len, &again, &why) != 0)
			abort();
		fw_msg_free(&again);
		fw_buf_free(&b);
	}
	fw_msg_free(&m);
	return 0;
}
