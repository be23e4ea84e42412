/*
 * record — binary encoding of the queue's keys, envelope and recipient records
 * (layout in record.h).  Records start with a version byte and end exactly
 * where their last field ends; a string is a 4-byte big-endian length (all ones
 * for NULL, which must stay distinct from "") followed by its bytes, no NUL.
 */
#include "queue/record.h"

#include <stdlib.h>
#include <string.h>

#define STR_NULL  UINT32_MAX		/* length marking a NULL string */
#define STR_MAX   (UINT32_MAX - 1)

/* version ret body flags arrival size nrcpts, and from version 2 arrival_usec */
#define ENVELOPE_FIXED_V1 (1 + 1 + 1 + 1 + 8 + 8 + 4)
#define ENVELOPE_FIXED (ENVELOPE_FIXED_V1 + 4)
#define ENVELOPE_SMTPUTF8 0x01
#define ENVELOPE_NOTICE 0x02
/* version state notify flags attempts next_attempt last_attempt */
#define RCPT_FIXED (1 + 1 + 1 + 1 + 4 + 8 + 8)
#define NOTIFY_ALL (QUEUE_NOTIFY_NEVER | QUEUE_NOTIFY_SUCCESS | QUEUE_NOTIFY_FAILURE | \
    QUEUE_NOTIFY_DELAY)

void queue_be32_put(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

void queue_be64_put(unsigned char *p, uint64_t v)
{
	queue_be32_put(p, (uint32_t)(v >> 32));
	queue_be32_put(p + 4, (uint32_t)v);
}

uint32_t queue_be32_get(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint64_t queue_be64_get(const unsigned char *p)
{
	return (uint64_t)queue_be32_get(p) << 32 | queue_be32_get(p + 4);
}

void queue_key_sub(unsigned char key[QUEUE_KEY_SUB_LEN], const char *id, uint32_t n)
{
	memcpy(key, id, QUEUE_ID_LEN);
	queue_be32_put(key + QUEUE_ID_LEN, n);
}

/* Times before 1970 cannot happen for a queued message; they sort as 0. */
void queue_key_sched(unsigned char key[QUEUE_KEY_SCHED_LEN], int64_t when, const char *id)
{
	queue_be64_put(key, when < 0 ? 0 : (uint64_t)when);
	memcpy(key + 8, id, QUEUE_ID_LEN);
}

void queue_rcpt_clear(struct queue_rcpt *r)
{
	free(r->addr);
	free(r->orcpt);
	free(r->last_reply);
	free(r->last_relay);
	r->addr = r->orcpt = r->last_reply = r->last_relay = NULL;
}

/* Encoding. */

/* Bytes a string takes, or 0 when it is too long to store. */
static size_t str_len(const char *s)
{
	if (!s)
		return 4;
	size_t n = strlen(s);
	return n > STR_MAX ? 0 : 4 + n;
}

static unsigned char *put_str(unsigned char *p, const char *s)
{
	if (!s) {
		queue_be32_put(p, STR_NULL);
		return p + 4;
	}
	size_t n = strlen(s);
	queue_be32_put(p, (uint32_t)n);
	memcpy(p + 4, s, n);	// NOLINT(bugprone-not-null-terminated-result): a counted string
	return p + 4 + n;
}

/* Sum of string lengths onto total; 0 as soon as one cannot be stored. */
static size_t add_strs(size_t total, const char *const *strs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t len = str_len(strs[i]);
		if (len == 0 || len > SIZE_MAX - total)
			return 0;
		total += len;
	}
	return total;
}

size_t queue_record_envelope_len(const struct queue_envelope *env)
{
	if (!env->sender || (unsigned)env->ret > QUEUE_RET_HDRS ||
	    (unsigned)env->body > QUEUE_BODY_8BITMIME || env->nrcpts > UINT32_MAX)
		return 0;
	const char *strs[] = { env->sender, env->envid, env->client_addr, env->helo,
	    env->auth_user };
	return add_strs(ENVELOPE_FIXED, strs, sizeof strs / sizeof strs[0]);
}

void queue_record_envelope_encode(const struct queue_envelope *env, unsigned char *p)
{
	p[0] = QUEUE_RECORD_VERSION;
	p[1] = (unsigned char)env->ret;
	p[2] = (unsigned char)env->body;
	p[3] = (env->smtputf8 ? ENVELOPE_SMTPUTF8 : 0) | (env->notice ? ENVELOPE_NOTICE : 0);
	queue_be64_put(p + 4, (uint64_t)env->arrival);
	queue_be64_put(p + 12, env->size);
	queue_be32_put(p + 20, (uint32_t)env->nrcpts);
	queue_be32_put(p + 24, env->arrival_usec);
	p += ENVELOPE_FIXED;
	p = put_str(p, env->sender);
	p = put_str(p, env->envid);
	p = put_str(p, env->client_addr);
	p = put_str(p, env->helo);
	put_str(p, env->auth_user);
}

size_t queue_record_rcpt_len(const struct queue_rcpt *r)
{
	if (!r->addr || (unsigned)r->state > QUEUE_RCPT_BOUNCED || (r->notify & ~NOTIFY_ALL))
		return 0;
	const char *strs[] = { r->addr, r->orcpt, r->last_reply, r->last_relay };
	if (r->flags > 0xff)
		return 0;
	return add_strs(RCPT_FIXED, strs, sizeof strs / sizeof strs[0]);
}

void queue_record_rcpt_encode(const struct queue_rcpt *r, unsigned char *p)
{
	p[0] = QUEUE_RCPT_VERSION;
	p[1] = (unsigned char)r->state;
	p[2] = (unsigned char)r->notify;
	p[3] = (unsigned char)r->flags;
	queue_be32_put(p + 4, r->attempts);
	queue_be64_put(p + 8, (uint64_t)r->next_attempt);
	queue_be64_put(p + 16, (uint64_t)r->last_attempt);
	p += RCPT_FIXED;
	p = put_str(p, r->addr);
	p = put_str(p, r->orcpt);
	p = put_str(p, r->last_reply);
	put_str(p, r->last_relay);
}

/* Decoding: a cursor over untrusted bytes.  Every take checks what is left. */

struct reader {
	const unsigned char *p;
	size_t left;
};

static const unsigned char *take(struct reader *rd, size_t n)
{
	if (n > rd->left)
		return NULL;
	const unsigned char *p = rd->p;
	rd->p += n;
	rd->left -= n;
	return p;
}

/* A string, or NULL for the NULL marker.  -1 when truncated, holding a NUL, or out of memory. */
static int take_str(struct reader *rd, char **out)
{
	const unsigned char *p = take(rd, 4);
	if (!p)
		return -1;
	uint32_t n = queue_be32_get(p);
	if (n == STR_NULL) {
		*out = NULL;
		return 0;
	}
	if (!(p = take(rd, n)) || memchr(p, '\0', n))
		return -1;
	char *s = malloc((size_t)n + 1);
	if (!s)
		return -1;
	memcpy(s, p, n);
	s[n] = '\0';
	*out = s;
	return 0;
}

/* Read n strings in order; on failure free those already read. */
static int take_strs(struct reader *rd, char **strs[], size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (take_str(rd, strs[i]) < 0) {
			while (i-- > 0) {
				free(*strs[i]);
				*strs[i] = NULL;
			}
			return -1;
		}
	}
	return 0;
}

int queue_record_envelope_decode(const void *data, size_t len, struct queue_envelope *env,
    uint32_t *nrcpts)
{
	struct reader rd = { data, len };
	int v1 = len > 0 && *(const unsigned char *)data == 1;
	const unsigned char *p = take(&rd, v1 ? ENVELOPE_FIXED_V1 : ENVELOPE_FIXED);
	uint32_t usec = p && !v1 ? queue_be32_get(p + 24) : 0;

	if (!p || (!v1 && p[0] != QUEUE_RECORD_VERSION) || usec > 999999 || p[1] > QUEUE_RET_HDRS ||
	    p[2] > QUEUE_BODY_8BITMIME || (p[3] & ~(ENVELOPE_SMTPUTF8 | ENVELOPE_NOTICE)))
		return -1;
	char *sender = NULL, *envid = NULL, *client_addr = NULL, *helo = NULL, *auth_user = NULL;
	char **strs[] = { &sender, &envid, &client_addr, &helo, &auth_user };
	if (take_strs(&rd, strs, sizeof strs / sizeof strs[0]) < 0)
		return -1;
	if (!sender || rd.left != 0) {
		for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
			free(*strs[i]);
		return -1;
	}
	env->ret = (enum queue_ret)p[1];
	env->body = (enum queue_body)p[2];
	env->smtputf8 = (p[3] & ENVELOPE_SMTPUTF8) != 0;
	env->notice = (p[3] & ENVELOPE_NOTICE) != 0;
	env->arrival = (int64_t)queue_be64_get(p + 4);
	env->arrival_usec = usec;
	env->size = queue_be64_get(p + 12);
	*nrcpts = queue_be32_get(p + 20);
	env->sender = sender;
	env->envid = envid;
	env->client_addr = client_addr;
	env->helo = helo;
	env->auth_user = auth_user;
	return 0;
}

int queue_record_rcpt_decode(const void *data, size_t len, struct queue_rcpt *r)
{
	struct reader rd = { data, len };
	const unsigned char *p = take(&rd, RCPT_FIXED);

	if (!p || p[0] != QUEUE_RCPT_VERSION || p[1] > QUEUE_RCPT_BOUNCED ||
	    (p[2] & ~NOTIFY_ALL))
		return -1;
	char *addr = NULL, *orcpt = NULL, *last_reply = NULL, *last_relay = NULL;
	char **strs[] = { &addr, &orcpt, &last_reply, &last_relay };
	if (take_strs(&rd, strs, sizeof strs / sizeof strs[0]) < 0)
		return -1;
	if (!addr || rd.left != 0) {
		free(addr);
		free(orcpt);
		free(last_reply);
		free(last_relay);
		return -1;
	}
	r->state = (enum queue_rcpt_state)p[1];
	r->notify = p[2];
	r->flags = p[3];
	r->attempts = queue_be32_get(p + 4);
	r->next_attempt = (int64_t)queue_be64_get(p + 8);
	r->last_attempt = (int64_t)queue_be64_get(p + 16);
	r->addr = addr;
	r->orcpt = orcpt;
	r->last_reply = last_reply;
	r->last_relay = last_relay;
	return 0;
}
