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
