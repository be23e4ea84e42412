/*
 * domain — a mail domain in the form routes and DNS compare: A-labels
 * (RFC 5890; an SMTPUTF8 recipient may write пример.рф, relayd.conf and the
 * DNS know xn--e1afmkfd.xn--p1ai), lower case, no trailing dot.  libidn2
 * does the IDNA conversion (UTS #46 non-transitional, as browsers and
 * Postfix do).
 */
#include "routes/routes.h"

#include <ctype.h>
#include <idn2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int routes_domain_ascii(const char *domain, char *out, size_t outlen)
{
	char *ascii = NULL;
	const char *from = domain;
	int non_ascii = 0;

	for (const char *c = domain; *c; c++)
		non_ascii |= (unsigned char)*c >= 0x80;
	if (non_ascii) {
		if (idn2_to_ascii_8z(domain, &ascii, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) !=
		    IDN2_OK)
			return -1;
		from = ascii;
	}
	size_t len = strlen(from);
	if (len > 0 && from[len - 1] == '.')
		len--;
	if (len >= outlen) {
		idn2_free(ascii);
		return -1;
	}
	for (size_t i = 0; i < len; i++)
		out[i] = (char)tolower((unsigned char)from[i]);
	out[len] = '\0';
	idn2_free(ascii);
	return 0;
}

int routes_address_ascii(const char *addr, char *out, size_t outlen)
{
	const char *at = strrchr(addr, '@');
	size_t local = at ? (size_t)(at - addr) + 1 : strlen(addr);	/* with the '@' */

	if (outlen == 0)
		return -1;
	if (local >= outlen)
		goto too_long;
	memcpy(out, addr, local);
	out[local] = '\0';
	if (!at)
		return 0;
	if (routes_domain_ascii(at + 1, out + local, outlen - local) == 0)
		return 0;
	if (strlen(at + 1) < outlen - local) {
		memcpy(out + local, at + 1, strlen(at + 1) + 1);	/* not an IDN: as written */
		return 0;
	}
too_long:
	out[0] = '\0';
	return -1;
}
