/* The server side: a listening socket's registration with its host's monitor. */
#ifndef FLARE_REGISTER_H
#define FLARE_REGISTER_H

/* ---- register.c: server side ---- */
void register_listen(int fd);
void register_retry(void);
/* Only a server registers: a client's close and dup look at one word
 * (inline here; the rest of this file is cold in clients) */
extern int flare_n_regs;
void register_forget_fd_any(int fd);
int register_knows_any(int fd);
static inline void register_forget_fd(int fd)
{
	if (__atomic_load_n(&flare_n_regs, __ATOMIC_RELAXED))
		register_forget_fd_any(fd);
}
static inline int register_knows(int fd)
{
	return __atomic_load_n(&flare_n_regs, __ATOMIC_RELAXED) && register_knows_any(fd);
}
void register_forget_range(unsigned first, unsigned last);
/* Owed work (lock.h): registrations whose sockets a handler closed */
void register_sweep(void);

#endif
