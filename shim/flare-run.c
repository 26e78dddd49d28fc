/* flare-run [-c FILE] [--shm NAME] -- PROGRAM [ARGS...]
 *
 * Runs PROGRAM with libflare.so preloaded (like torsocks or proxychains4),
 * and says so plainly when PROGRAM cannot be preloaded: statically linked,
 * set-user-ID (secure execution ignores LD_PRELOAD), or a Go binary (Go's
 * network stack does not go through libc). */
#include "config.h"

#ifndef FLARE_LIBSUBDIR
#define FLARE_LIBSUBDIR "lib/flare"
#endif
#ifndef FLARE_LIBDIR
#define FLARE_LIBDIR "/usr/local/" FLARE_LIBSUBDIR
#endif

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: flare-run [-c FILE] [--shm NAME] -- PROGRAM [ARGS...]\n"
		"  -c, --config FILE  take the table name from the config (agent.shm);\n"
		"                     default " FLARE_DEFAULT_CONFIG " when it exists\n"
		"  --shm NAME         the shared table to read (default /flare)\n"
		"environment: FLARE_LOG=error|warn|info|debug, FLARE_DISABLE=1, FLARE_LIB=path\n");
}

/* libflare.so beside this binary, or in ../lib/flare/ (make install). */
static int find_library(char *out, size_t n)
{
	const char *env = getenv("FLARE_LIB");
	char self[PATH_MAX];
	if (env && *env) {
		snprintf(out, n, "%s", env);
		return access(out, R_OK);
	}
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (len <= 0) { /* no /proc (a chroot): where make install put it */
		snprintf(out, n, "%s", FLARE_LIBDIR "/libflare.so");
		return access(out, R_OK);
	}
	self[len] = '\0';
	char *slash = strrchr(self, '/');
	if (!slash)
		return -1;
	*slash = '\0';
	if (snprintf(out, n, "%s/libflare.so", self) < (int)n && access(out, R_OK) == 0)
		return 0;
	if (snprintf(out, n, "%s/../" FLARE_LIBSUBDIR "/libflare.so", self) >= (int)n)
		return -1;
	return access(out, R_OK);
}

static int find_program(const char *prog, char *out, size_t n)
{
	if (strchr(prog, '/')) {
		snprintf(out, n, "%s", prog);
		return access(out, X_OK);
	}
	const char *path = getenv("PATH");
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", path ? path : "/usr/local/bin:/usr/bin:/bin");
	for (char *save = NULL, *dir = strtok_r(buf, ":", &save); dir;
	     dir = strtok_r(NULL, ":", &save)) {
		if (snprintf(out, n, "%s/%s", *dir ? dir : ".", prog) < (int)n &&
		    access(out, X_OK) == 0)
			return 0;
	}
	return -1;
}

/* Reads the ELF headers: no PT_INTERP means static; a .go.buildinfo or
 * .note.go.buildid section means Go. Scripts (#!) are fine: their
 * interpreter gets the preload. */
static void inspect(const char *path, const char *prog)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < (off_t)sizeof(Elf64_Ehdr)) {
		if (fd >= 0)
			close(fd);
		return;
	}
	/* the loader ignores LD_PRELOAD only in secure-execution mode: when
	 * the program will run with another user or group than the caller's
	 * (root running a set-user-ID-root program is managed) */
	if (((st.st_mode & S_ISUID) && st.st_uid != getuid()) ||
	    ((st.st_mode & S_ISGID) && st.st_gid != getgid()))
		fprintf(stderr,
			"flare-run: warning: %s is set-user/group-ID: the loader ignores "
			"LD_PRELOAD for it, it runs without flare\n",
			prog);
	uint8_t *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return;
	const Elf64_Ehdr *eh = (const void *)p;
	size_t size = (size_t)st.st_size;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64)
		goto out;
	int interp = 0, go = 0;
	if (eh->e_phoff < size && eh->e_phnum < 1024 &&
	    eh->e_phoff + (size_t)eh->e_phnum * sizeof(Elf64_Phdr) <= size) {
		const Elf64_Phdr *ph = (const void *)(p + eh->e_phoff);
		for (int i = 0; i < eh->e_phnum; i++)
			interp |= ph[i].p_type == PT_INTERP;
	}
	if (eh->e_shoff < size && eh->e_shnum < 65535 && eh->e_shstrndx < eh->e_shnum &&
	    eh->e_shoff + (size_t)eh->e_shnum * sizeof(Elf64_Shdr) <= size) {
		const Elf64_Shdr *sh = (const void *)(p + eh->e_shoff);
		const Elf64_Shdr *strs = &sh[eh->e_shstrndx];
		for (int i = 0; i < eh->e_shnum && strs->sh_offset < size; i++) {
			size_t off = strs->sh_offset + sh[i].sh_name;
			if (off + 20 < size &&
			    (strncmp((const char *)p + off, ".go.buildinfo", 13) == 0 ||
			     strncmp((const char *)p + off, ".note.go.buildid", 16) == 0))
				go = 1;
		}
	}
	if (!interp)
		fprintf(stderr,
			"flare-run: warning: %s is statically linked: libflare.so cannot be "
			"preloaded, it runs without flare\n",
			prog);
	else if (go)
		fprintf(stderr,
			"flare-run: warning: %s is a Go program: Go's own network stack "
			"bypasses libc, its connections are not managed by flare\n",
			prog);
out:
	munmap(p, size);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
					     {"shm", required_argument, NULL, 's'},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	const char *conf = NULL, *shm = NULL;
	int o;
	while ((o = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c': conf = optarg; break;
		case 's': shm = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	char lib[PATH_MAX], prog[PATH_MAX], err[512], pre[8192];
	struct flare_config cfg;
	/* Fail open: a problem of flare's (a config with a typo, a library
	 * missing) never keeps the program from running. It runs without
	 * flare, as it would without flare-run, with one warning saying why. */
	int without = 0, loaded;
	if (!conf && access(FLARE_DEFAULT_CONFIG, F_OK) == 0)
		conf = FLARE_DEFAULT_CONFIG; /* the host's config, as the daemons' units read it */
	if (conf) {
		loaded = flare_config_load_client(conf, &cfg, err, sizeof(err));
		if (loaded < 0) {
			fprintf(stderr, "flare-run: warning: %s: %s runs without flare\n", err,
				argv[optind]);
			without = 1;
		} else {
			/* the daemons refuse such a file on reload and keep their
			 * last good config: the table is still there */
			if (loaded == 1)
				fprintf(stderr,
					"flare-run: warning: %s: %s runs with flare, taking only "
					"agent and library from this file\n",
					err, argv[optind]);
			if (!shm)
				setenv("FLARE_SHM", cfg.agent_shm, 1);
			if (cfg.library_syslog)
				setenv("FLARE_LOG_TARGET", "syslog", 0); /* the environment wins */
			if (cfg.agent_user[0]) {
				/* the library trusts a table of this user's, besides
				 * root's and the program's own user's */
				struct passwd *pw = getpwnam(cfg.agent_user);
				if (!pw) {
					fprintf(stderr,
						"flare-run: warning: %s: agent.user '%s': no such "
						"user: only root's and this user's tables are "
						"trusted\n",
						conf, cfg.agent_user);
				} else {
					char uid[16];
					snprintf(uid, sizeof(uid), "%u", (unsigned)pw->pw_uid);
					setenv("FLARE_AGENT_UID", uid, 1);
				}
			}
			flare_config_free(&cfg);
		}
	}
	if (shm)
		setenv("FLARE_SHM", shm, 1);
	if (find_program(argv[optind], prog, sizeof(prog)) < 0) {
		/* as a shell says it: a file that is there but cannot be run is
		 * not "not found" */
		if (strchr(argv[optind], '/') && access(argv[optind], F_OK) == 0) {
			fprintf(stderr, "flare-run: %s: %s\n", argv[optind],
				strerror(errno == ENOENT ? EACCES : errno));
			return 126;
		}
		fprintf(stderr, "flare-run: %s: command not found\n", argv[optind]);
		return 127;
	}
	if (!without && find_library(lib, sizeof(lib)) < 0) {
		const char *env = getenv("FLARE_LIB");
		if (env && *env)
			fprintf(stderr,
				"flare-run: warning: FLARE_LIB=%s: %s: %s runs without flare\n",
				env, strerror(errno), argv[optind]);
		else
			fprintf(stderr,
				"flare-run: warning: libflare.so is neither beside flare-run nor "
				"in ../" FLARE_LIBSUBDIR "/ (set FLARE_LIB): %s runs without "
				"flare\n",
				argv[optind]);
		without = 1;
	}
	if (!without) {
		inspect(prog, argv[optind]);
		const char *old = getenv("LD_PRELOAD");
		snprintf(pre, sizeof(pre), "%s%s%s", lib, old && *old ? " " : "", old ? old : "");
		setenv("LD_PRELOAD", pre, 1);
	}
	execv(prog, argv + optind);
	fprintf(stderr, "flare-run: cannot run %s: %s\n", prog, strerror(errno));
	return 126;
}
