/*
 * smtp_transaction — one message over a ready upstream connection: MAIL
 * FROM (SIZE, BODY, SMTPUTF8, RET, ENVID as offered), RCPT TO (NOTIFY,
 * ORCPT) for each recipient of the job, DATA, the body streamed from the
 * queue chunk by chunk, dot-stuffed with CRLF line ends.  With PIPELINING
 * MAIL, RCPT… and DATA go out at once and the replies are matched in order.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relayd/smtp_client.h"

/* ---- body -------------------------------------------------------------- */

struct stuff_ctx {
	struct smtp_client *c;
	struct evbuffer *out;
};

/*
 * A chunk with dot-stuffing and CRLF line ends (smtp_dot.c), stuffed straight
 * into the output buffer's own memory, a piece at a time: a buffer of twice
 * the chunk (512 KB) per call went to mmap and back each time and cost a
 * fifth of relayd's time with 100 KB messages.
 */
#define STUFF_PIECE (16 * 1024)
static int stuff_chunk(void *arg, const void *data, size_t len)
{
	struct stuff_ctx *x = arg;
	struct smtp_client *c = x->c;
	const char *p = data;

	c->body_read += len;
	while (len > 0) {
		size_t n = len < STUFF_PIECE ? len : STUFF_PIECE;
		struct evbuffer_iovec v;
		if (evbuffer_reserve_space(x->out, (ev_ssize_t)(2 * n + 2), &v, 1) < 1)
			return -1;
		v.iov_len = smtp_dot_stuff(&c->dot, p, n, v.iov_base);
		if (evbuffer_commit_space(x->out, &v, 1) < 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

/* Fill the output up to BODY_HIGH; after the last chunk, the terminating dot. */
void tx_pump_body(struct smtp_client *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct stuff_ctx x = { c, out };

	while (!c->body_done && evbuffer_get_length(out) < BODY_HIGH) {
		int r = queue_read_chunk(c->up->d->queue, c->job->env->id, c->chunk, stuff_chunk, &x);
		if (r < 0) {
			client_fail(c, 451, "4.3.0", "cannot read the message from the queue");
			return;
		}
		if (r == 0 && c->body_read != c->job->env->size) {
			/* Deleted (relayctl) while going out: never end a cut message with the dot. */
			client_fail(c, 451, "4.3.0", "the message left the queue while it was being "
			    "sent");
			return;
		}
		if (r == 0) {
			char end[5];
			size_t n = smtp_dot_finish(&c->dot, end);
			evbuffer_add(out, end, n);
			c->body_done = 1;
			c->state = C_DOT;
			client_set_timeout(c, T_DATA_END(c));
			bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
			return;
		}
		c->chunk++;
	}
}

/* ---- transaction ------------------------------------------------------- */

/* ORCPT and ENVID are stored as received (xtext): passed on unchanged. */
/*
 * DSN parameters go on when the upstream offers DSN (RFC 3461 §5) — but not
 * when envelope_from replaced the sender: the upstream's reports would go to
 * the account, so relayd reports to the real sender itself.
 */
static int dsn_on(const struct smtp_client *c)
{
	return c->dsn && !(c->job->env->sender[0] && c->up->conf->envelope_from);
}

static void send_mail(struct smtp_client *c)
{
	const struct queue_envelope *env = c->job->env;
	struct evbuffer *out = bufferevent_get_output(c->bev);

	const char *from = env->sender;
	/* envelope_from: a provider that takes only its account's address; <> stays <>. */
	if (from[0] && c->up->conf->envelope_from)
		from = c->up->conf->envelope_from;
	evbuffer_add_printf(out, "MAIL FROM:<%s>", from);
	if (c->size)	/* RFC 1870: only to a server that offers SIZE */
		evbuffer_add_printf(out, " SIZE=%llu", (unsigned long long)env->size);
	if (c->eightbit && env->body == QUEUE_BODY_8BITMIME)
		evbuffer_add_printf(out, " BODY=8BITMIME");
	if (c->smtputf8 && env->smtputf8)
		evbuffer_add_printf(out, " SMTPUTF8");
	if (dsn_on(c) && env->ret != QUEUE_RET_NONE)
		evbuffer_add_printf(out, " RET=%s", env->ret == QUEUE_RET_FULL ? "FULL" : "HDRS");
	if (dsn_on(c) && env->envid)
		evbuffer_add_printf(out, " ENVID=%s", env->envid);
	evbuffer_add(out, "\r\n", 2);
}

static void send_rcpt(struct smtp_client *c, size_t i)
{
	const struct queue_rcpt *r = &c->job->env->rcpts[c->job->rcpts[i].index];
	struct evbuffer *out = bufferevent_get_output(c->bev);

	evbuffer_add_printf(out, "RCPT TO:<%s>", r->addr);
	if (dsn_on(c) && r->notify) {
		char list[32];
		snprintf(list, sizeof list, "%s%s%s%s",
		    r->notify & QUEUE_NOTIFY_NEVER ? ",NEVER" : "",
		    r->notify & QUEUE_NOTIFY_SUCCESS ? ",SUCCESS" : "",
		    r->notify & QUEUE_NOTIFY_FAILURE ? ",FAILURE" : "",
		    r->notify & QUEUE_NOTIFY_DELAY ? ",DELAY" : "");
		evbuffer_add_printf(out, " NOTIFY=%s", list + 1);
	}
	if (dsn_on(c) && r->orcpt)
		evbuffer_add_printf(out, " ORCPT=%s", r->orcpt);
	evbuffer_add(out, "\r\n", 2);
}

static int non_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			return 1;
	return 0;
}

static int needs_utf8(const struct delivery_job *job)
{
	if (non_ascii(job->env->sender))
		return 1;
	for (size_t i = 0; i < job->nrcpts; i++)
		if (non_ascii(job->env->rcpts[job->rcpts[i].index].addr))
			return 1;
	return 0;
}

void tx_begin(struct smtp_client *c)
{
	struct delivery_job *job = c->job;

	snprintf(job->relay, sizeof job->relay, "%s", c->relay);
	snprintf(job->mta, sizeof job->mta, "%s", c->targets[c->target].host);
	job->t_ready = delivery_now();
	job->dsn_passed = dsn_on(c);
	if (c->size_limit && job->env->size > c->size_limit) {
		char why[160];
		snprintf(why, sizeof why, "message size %llu exceeds the upstream's limit of %llu "
		    "bytes (SIZE)", (unsigned long long)job->env->size,
		    (unsigned long long)c->size_limit);
		client_finish_job(c, 552, "5.3.4", why);
		c->state = C_IDLE;
		smtp_client_run(c, upstream_next_job(c->up));
		return;
	}
	if (job->env->smtputf8 && !c->smtputf8 && needs_utf8(job)) {
		/*
		 * RFC 6531 §3.4: non-ASCII addresses need SMTPUTF8 all the way.  Like
		 * Postfix, an ASCII envelope goes on without it even when asked for.
		 */
		client_finish_job(c, 553, "5.6.7", "the message needs SMTPUTF8 (non-ASCII addresses) "
		    "and the upstream does not offer it");
		c->state = C_IDLE;
		smtp_client_run(c, upstream_next_job(c->up));
		return;
	}
	c->rcpt_i = 0;
	c->accepted = 0;
	c->mail_failed = 0;
	c->chunk = 0;
	c->body_read = 0;
	smtp_dot_writer_init(&c->dot);
	c->body_done = 0;
	c->state = C_MAIL;
	client_set_timeout(c, T_COMMAND(c));
	send_mail(c);
	if (c->pipelining) {
		for (size_t i = 0; i < job->nrcpts; i++)
			send_rcpt(c, i);
		client_send(c, "DATA");
		c->sent_rcpts = job->nrcpts;
	} else {
		c->sent_rcpts = 0;
	}
}

/* After a transaction that ended early: RSET, then the next job. */
static void reset_after(struct smtp_client *c)
{
	c->state = C_RSET;
	client_set_timeout(c, T_COMMAND(c));
	client_send(c, "RSET");
}

static void mail_reply(struct smtp_client *c)
{
	struct delivery_job *job = c->job;
	if (c->reply.code / 100 != 2) {
		c->mail_failed = 1;
		for (size_t i = 0; i < job->nrcpts; i++)
			client_rcpt_result(&job->rcpts[i], c->reply.code, c->reply.dsn, c->reply.text);
		if (!c->pipelining) {
			client_finish_job(c, 0, "", "");
			reset_after(c);
			return;
		}
	}
	c->state = C_RCPT;
	if (!c->pipelining) {
		send_rcpt(c, 0);
		c->sent_rcpts = 1;
	}
}

static void rcpt_reply(struct smtp_client *c)
{
	struct delivery_job *job = c->job;
	struct job_rcpt *r = &job->rcpts[c->rcpt_i++];

	if (c->reply.code / 100 == 2 && !c->mail_failed) {
		r->accepted = 1;
		c->accepted++;
	} else {
		client_rcpt_result(r, c->reply.code, c->reply.dsn, c->reply.text);
	}
	if (c->rcpt_i < job->nrcpts) {
		if (!c->pipelining) {
			send_rcpt(c, c->sent_rcpts++);
		}
		return;
	}
	c->state = C_DATA;
	client_set_timeout(c, T_COMMAND(c));
	if (!c->pipelining) {
		if (c->accepted == 0) {
			client_finish_job(c, 0, "", "");
			reset_after(c);
			return;
		}
		client_send(c, "DATA");
	}
}

static void data_reply(struct smtp_client *c)
{
	if (c->reply.code == 354 && (c->accepted == 0 || c->mail_failed)) {
		/* RFC 2920 §3.1: DATA was accepted though nobody was: send an empty message. */
		evbuffer_add(bufferevent_get_output(c->bev), ".\r\n", 3);
		c->state = C_DOT;
		c->body_done = 1;
		return;
	}
	if (c->reply.code != 354) {
		if (c->accepted > 0)
			client_finish_job(c, c->reply.code, c->reply.dsn, c->reply.text);
		else
			client_finish_job(c, 0, "", "");
		reset_after(c);
		return;
	}
	c->state = C_BODY;
	client_set_timeout(c, T_COMMAND(c));
	bufferevent_setwatermark(c->bev, EV_WRITE, BODY_HIGH / 4, 0);
	tx_pump_body(c);
}

static void dot_reply(struct smtp_client *c)
{
	struct delivery_job *job = c->job;
	for (size_t i = 0; i < job->nrcpts; i++)
		if (job->rcpts[i].accepted)
			client_rcpt_result(&job->rcpts[i], c->reply.code, c->reply.dsn, c->reply.text);
	int ok = c->accepted > 0 && !c->mail_failed;
	client_finish_job(c, 0, "", "");
	if (!ok) {
		reset_after(c);
		return;
	}
	c->state = C_IDLE;
	smtp_client_run(c, upstream_next_job(c->up));
}

void tx_reply(struct smtp_client *c)
{
	switch (c->state) {
	case C_MAIL: mail_reply(c); return;
	case C_RCPT: rcpt_reply(c); return;
	case C_DATA: data_reply(c); return;
	case C_DOT: dot_reply(c); return;
	default: return;
	}
}
