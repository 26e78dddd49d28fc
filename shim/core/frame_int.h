/* Helpers shared by the framers (frame_*.c): numbers read a byte at a time,
 * case-insensitive words. */
#ifndef FLARE_FRAME_INT_H
#define FLARE_FRAME_INT_H

#include "frame.h"

#include <string.h>

#define FR_NUM_DIGITS 18

/* One byte of "[-]digits\r\n": 0 to go on, 1 at the newline (the value in
 * *num), -1 for anything else. */
static inline int fr_num_byte(int64_t *num, uint8_t *neg, uint8_t *digits, uint8_t c)
{
	if (c >= '0' && c <= '9') {
		if (++*digits > FR_NUM_DIGITS)
			return -1;
		*num = *num * 10 + (c - '0');
		return 0;
	}
	if (c == '-' && !*digits && !*neg) {
		*neg = 1;
		return 0;
	}
	if (c == '\r')
		return 0;
	if (c == '\n' && *digits) {
		if (*neg)
			*num = -*num;
		return 1;
	}
	return -1;
}

static inline void fr_num_reset(int64_t *num, uint8_t *neg, uint8_t *digits)
{
	*num = 0;
	*neg = *digits = 0;
}

static inline char fr_upper(char c) { return c >= 'a' && c <= 'z' ? (char)(c - 32) : c; }

/* word (wlen bytes) equals the upper-case s, ignoring case */
static inline int fr_is(const char *word, size_t wlen, const char *s)
{
	size_t n = strlen(s);
	if (wlen != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (fr_upper(word[i]) != s[i])
			return 0;
	return 1;
}

static inline void fr_keep(char *word, uint8_t *wlen, uint8_t c)
{
	if (*wlen < FR_WORD)
		word[(*wlen)++] = (char)c;
}

#endif
