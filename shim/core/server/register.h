/* The server side: a listening socket's registration with its host's monitor. */
#ifndef FLARE_REGISTER_H
#define FLARE_REGISTER_H

/* ---- register.c: server side ---- */
void register_listen(int fd);
void register_retry(void);
void register_forget_fd(int fd);
int register_knows(int fd);
void register_forget_range(unsigned first, unsigned last);
/* Owed work (lock.h): registrations whose sockets a handler closed */
void register_sweep(void);

#endif
