#include "tcpsilent.h"

#include <stdint.h>

int flare_tcp_peer_silent(const struct tcp_info *ti, size_t len)
{
	if (len < offsetof(struct tcp_info, tcpi_rcv_rtt))
		return 0;
	switch (ti->tcpi_state) {
	case TCP_CLOSE_WAIT:
	case TCP_LAST_ACK:
	case TCP_CLOSING:
	case TCP_TIME_WAIT:
	case TCP_CLOSE: return 1; /* the peer closed or reset: nothing more will come */
	default: break;
	}
	if (ti->tcpi_probes > 0 || ti->tcpi_backoff > 0)
		return 1;
	uint32_t bound = ti->tcpi_rtt / 250; /* four round trips, in ms */
	if (bound < FLARE_SILENT_MS)
		bound = FLARE_SILENT_MS;
	return ti->tcpi_unacked > 0 &&
	       (ti->tcpi_retransmits > 0 ||
		(ti->tcpi_last_data_sent >= bound && ti->tcpi_last_ack_recv >= bound));
}
