#include "hook.h"

#include <fcntl.h>

/* Bytes moved between a pipe (or file) and a socket inside the kernel:
 * either end that is managed is tainted first (see sendfile.c). */
static void taint_either(int a, int b, const char *why)
{
	fconn_taint(a, why);
	fconn_taint(b, why);
}

FLARE_EXPORT ssize_t splice(int in, off_t *off_in, int out, off_t *off_out, size_t len,
			    unsigned flags)
{
	HOOK_ENTER(splice, (ssize_t)syscall(SYS_splice, in, off_in, out, off_out, len, flags));
	taint_either(in, out, "splice");
	return real.splice(in, off_in, out, off_out, len, flags);
}

FLARE_EXPORT ssize_t copy_file_range(int in, off_t *off_in, int out, off_t *off_out, size_t len,
				     unsigned flags)
{
	HOOK_ENTER(copy_file_range,
		   (ssize_t)syscall(SYS_copy_file_range, in, off_in, out, off_out, len, flags));
	taint_either(in, out, "copy_file_range");
	return real.copy_file_range(in, off_in, out, off_out, len, flags);
}
