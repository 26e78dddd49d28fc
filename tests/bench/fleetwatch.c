/* fleetwatch SHM_LIST_FILE: not a program to run by hand; bench.py drives
 * it. It reads every agent's table of a fleet (one shared-memory name per
 * line of the file) as a client on that agent's host does, and times how
 * long a replica's death takes to reach each of them.
 *
 * Protocol on stdin/stdout, one line each (SVC and REP: the replica's
 * service index and its place in the service):
 *   "wait-alive SVC REP"  -> "alive N" once N tables show it alive (all, or
 *                            after 30 s as many as do)
 *   "kill PID SVC REP"    -> "dead N US..." after SIGKILL of PID: N tables
 *                            showed the replica dead within 10 s, each
 *                            after US microseconds
 * A table is looked at again only when its generation moved, so polling a
 * thousand of them costs a thousand loads per sweep: the agents, not this
 * process, get the machine's time. */
#include "clock.h"
#include "table.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_TABLES 4096

static struct flare_tbl_reader readers[MAX_TABLES];
static char *names[MAX_TABLES];
static int n_tables;

static int state(struct flare_tbl_reader *r, uint32_t svc, uint32_t rep)
{
	struct flare_route rt;
	if (flare_tbl_read_route(r, svc, &rt) != FLARE_TBL_OK || rep >= rt.svc.n_replicas)
		return -1;
	return rt.reps[rep].alive;
}

/* Sweeps the tables until each shows want (or the deadline); fills us[i]
 * with the microseconds since t0 at which table i did (0: never). */
static int sweep(uint32_t svc, uint32_t rep, int want, uint64_t t0, uint64_t limit_ns, uint64_t *us)
{
	static uint64_t gen[MAX_TABLES];
	int left = 0, done = 0;
	for (int i = 0; i < n_tables; i++) {
		us[i] = 0;
		gen[i] = UINT64_MAX;
		left++;
	}
	struct timespec nap = {0, 100000};
	while (left && flare_monotonic_ns() - t0 < limit_ns) {
		for (int i = 0; i < n_tables; i++) {
			if (us[i])
				continue;
			uint64_t g = flare_tbl_gen(&readers[i]);
			if (g == gen[i])
				continue;
			gen[i] = g;
			if (state(&readers[i], svc, rep) == want) {
				uint64_t t = (flare_monotonic_ns() - t0) / 1000;
				us[i] = t ? t : 1;
				left--;
				done++;
			}
		}
		if (left)
			nanosleep(&nap, NULL);
	}
	return done;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	FILE *f = fopen(argv[1], "r");
	char line[256];
	while (f && n_tables < MAX_TABLES && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (*line)
			names[n_tables++] = strdup(line);
	}
	if (f)
		fclose(f);
	static uint64_t us[MAX_TABLES];
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		unsigned svc, rep;
		int pid = 0, opened = 0;
		int kill_cmd = sscanf(line, "kill %d %u %u", &pid, &svc, &rep) == 3;
		if (!kill_cmd && sscanf(line, "wait-alive %u %u", &svc, &rep) != 2) {
			printf("error unknown command\n");
			continue;
		}
		/* open every table again: an agent may have replaced its segment */
		static char open_ok[MAX_TABLES];
		for (int i = 0; i < n_tables; i++) {
			open_ok[i] =
			    flare_tbl_reader_open(&readers[i], names[i], NULL) == FLARE_TBL_OK;
			opened += open_ok[i];
		}
		if (opened != n_tables) {
			printf("error %d of %d tables open\n", opened, n_tables);
		} else if (!kill_cmd) {
			printf("alive %d\n",
			       sweep(svc, rep, 1, flare_monotonic_ns(), 30000000000ull, us));
		} else {
			uint64_t t0 = flare_monotonic_ns();
			kill(pid, SIGKILL);
			printf("dead %d", sweep(svc, rep, 0, t0, 10000000000ull, us));
			for (int i = 0; i < n_tables; i++)
				if (us[i])
					printf(" %llu", (unsigned long long)us[i]);
			printf("\n");
		}
		for (int i = 0; i < n_tables; i++)
			if (open_ok[i])
				flare_tbl_reader_close(&readers[i]);
	}
	return 0;
}
