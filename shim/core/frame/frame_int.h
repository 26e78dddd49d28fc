/* Helpers shared by the framers (frame_*.c): numbers read a byte at a time,
 * case-insensitive words. */
#ifndef FLARE_FRAME_INT_H
#define FLARE_FRAME_INT_H

#include "frame/frame.h"

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

/* Case folding a word at a time: s's letters get the 0x20 bit, and so
 * does the word compared where s has a letter; with s a literal the
 * compiler folds s's words and masks to constants. Any byte of the word
 * that is not the letter or its lower case differs after the OR. */
static inline uint64_t fr_load(const char *p, size_t k)
{
	uint64_t v = 0;
	memcpy(&v, p, k);
	return v;
}

/* 0x20 at each byte of k that is an upper-case letter (ASCII bytes: no
 * carry crosses a byte); k a constant, this is one */
static inline uint64_t fr_letters(uint64_t k)
{
	const uint64_t ones = 0x0101010101010101ull;
	return ((k + 0x3f * ones) & ~(k + 0x25 * ones) & 0x80 * ones) >> 2;
}

static inline int fr_same(const char *w, const char *s, size_t k)
{
	uint64_t key = fr_load(s, k), m = fr_letters(key);
	return (fr_load(w, k) | m) == (key | m);
}

/* word (wlen bytes) equals the upper-case s, ignoring case: words of 8
 * (or 4) bytes, the last one overlapping the one before */
static inline __attribute__((always_inline)) int fr_is(const char *word, size_t wlen, const char *s)
{
	size_t n = strlen(s);
	if (wlen != n)
		return 0;
	if (n >= 8) {
		for (size_t i = 0; i + 8 < n; i += 8)
			if (!fr_same(word + i, s + i, 8))
				return 0;
		return fr_same(word + n - 8, s + n - 8, 8);
	}
	if (n >= 4)
		return fr_same(word, s, 4) && fr_same(word + n - 4, s + n - 4, 4);
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
