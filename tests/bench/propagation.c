/* propagation SHM SERVICE_INDEX REPLICA_INDEX PIDFILE_DIR...: not a program
 * to run by hand; bench.py drives it. It reads the table as a client does.
 *
 * Protocol on stdin/stdout, one line each:
 *   "wait-alive"  -> "alive"  once the replica is alive in the table
 *   "kill PID"    -> "dead US" after SIGKILL of PID, the microseconds until
 *                    the table showed the replica dead (polled every 20 us) */
#include "clock.h"
#include "table.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int alive(struct flare_tbl_reader *r, uint32_t svc, uint32_t rep)
{
	struct flare_route rt;
	return flare_tbl_read_route(r, svc, &rt) == FLARE_TBL_OK && rep < rt.svc.n_replicas &&
	       rt.reps[rep].alive;
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	struct flare_tbl_reader r;
	uint32_t svc = (uint32_t)atoi(argv[2]), rep = (uint32_t)atoi(argv[3]);
	char line[128];
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		if (flare_tbl_reader_open(&r, argv[1], NULL) != FLARE_TBL_OK) {
			printf("error no table\n");
			continue;
		}
		struct timespec nap = {0, 20000};
		if (strncmp(line, "wait-alive", 10) == 0) {
			for (int i = 0; i < 500000 && !alive(&r, svc, rep); i++)
				nanosleep(&nap, NULL);
			printf(alive(&r, svc, rep) ? "alive\n" : "error timeout\n");
		} else if (strncmp(line, "kill ", 5) == 0) {
			pid_t pid = (pid_t)atoi(line + 5);
			uint64_t t0 = flare_monotonic_ns();
			kill(pid, SIGKILL);
			int i = 0;
			for (; i < 500000 && alive(&r, svc, rep); i++)
				nanosleep(&nap, NULL);
			printf("dead %.1f\n", (double)(flare_monotonic_ns() - t0) / 1000.0);
		}
		flare_tbl_reader_close(&r);
	}
	return 0;
}
