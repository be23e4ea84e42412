/*
 * presets — what the providers' own documentation says about their SMTP
 * submission service, so that `preset gmail` is all an admin has to know.
 * A row per provider; keywords written in the block override it.  Add a
 * provider here and in the man page's list.  The last field is what the SPF
 * record of a domain sending through the provider includes (relayctl doctor).
 */
#include "conf/internal.h"

#include <string.h>

static const struct conf_preset presets[] = {
	/* Mailgun: smtp.mailgun.org, 587 with STARTTLS; EU accounts their own host. */
	{ "mailgun", "smtp.mailgun.org", 587, CONF_TLS_STARTTLS, NULL, 1, 0, 0, "mailgun.org" },
	{ "mailgun-eu", "smtp.eu.mailgun.org", 587, CONF_TLS_STARTTLS, NULL, 1, 0, 0,
	  "mailgun.org" },
	/* SendGrid: the user is literally "apikey", the password an API key. */
	{ "sendgrid", "smtp.sendgrid.net", 587, CONF_TLS_STARTTLS, "apikey", 1, 0, 0,
	  "sendgrid.net" },
	/* Gmail: the sender must be the account (or its verified alias); 500 a day. */
	{ "gmail", "smtp.gmail.com", 587, CONF_TLS_STARTTLS, NULL, 1, 1, 500, "_spf.google.com" },
	/* Yandex: implicit TLS; MAIL FROM must be the login, and <> is refused. */
	{ "yandex", "smtp.yandex.ru", 465, CONF_TLS_IMPLICIT, NULL, 0, 1, 0, "_spf.yandex.net" },
	/* Mail.ru: implicit TLS; MAIL FROM must be the login. */
	{ "mailru", "smtp.mail.ru", 465, CONF_TLS_IMPLICIT, NULL, 1, 1, 0, "_spf.mail.ru" },
};

const struct conf_preset *conf_find_preset(const char *name)
{
	for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
		if (strcmp(presets[i].name, name) == 0)
			return &presets[i];
	return NULL;
}
