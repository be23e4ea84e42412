/*
 * notice — relayd's own warnings to the postmaster about its resources
 * (`notify resource`): the queue over queue_warn messages, or the queue's
 * file system over 90 % full.  Checked every NOTICE_CHECK seconds; one
 * notice each time a threshold is crossed, another only after it was below
 * again.  A notice is a plain message from the null sender marked a notice,
 * so if it cannot be delivered it is dropped, never bounced.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "relayd/bounce.h"
#include "relayd/delivery_internal.h"
#include "relayd/log.h"

#define DISK_WARN_PERCENT 90

static void notice_done(void *arg, enum queue_status status)
{
	char *id = arg;

	if (status != QUEUE_OK)
		log_warn("%s: the postmaster notice could not be queued", id);
	free(id);
}

/* Queue a notice to the postmaster: subject and text (CRLF lines, ASCII). */
static void send_notice(struct delivery *d, const char *subject, const char *text)
{
	const struct config *conf = d->conf;
	struct queue_envelope *env = queue_envelope_new();
	struct queue_spool *sp = queue_spool_new(d->queue);
	char date[64], *head = NULL, *id = NULL;
	int64_t now = (int64_t)time(NULL);

	if (!env || !sp)
		goto fail;
	queue_new_id(d->queue, env->id);
	bounce_format_date(date, sizeof date, now);
	env->notice = 1;
	env->arrival = now;
	env->body = QUEUE_BODY_7BIT;
	if (!(env->sender = strdup("")) ||
	    queue_envelope_add_rcpt(env, conf->postmaster, NULL, QUEUE_NOTIFY_NEVER) < 0 ||
	    asprintf(&head, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\nTo: <%s>\r\n"
	    "Subject: Postmaster Warning: %s\r\nDate: %s\r\nMessage-ID: <%s.%lld@%s>\r\n"
	    "Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
	    "This is the mail system at host %s.\r\n\r\n", conf->hostname, conf->postmaster,
	    subject, date, env->id, (long long)now, conf->hostname, conf->hostname) < 0) {
		head = NULL;
		goto fail;
	}
	if (queue_spool_write(sp, head, strlen(head)) < 0 ||
	    queue_spool_write(sp, text, strlen(text)) < 0 || !(id = strdup(env->id)))
		goto fail;
	env->size = queue_spool_size(sp);
	free(head);
	log_warn("%s: postmaster notice to <%s>: %s", env->id, conf->postmaster, subject);
	if (queue_commit(d->queue, env, sp, notice_done, id) < 0) {
		log_warn("%s: the postmaster notice could not be queued: out of memory", id);
		free(id);
	}
	return;
fail:
	log_warn("cannot write the postmaster notice \"%s\": %s", subject, strerror(errno));
	free(head);
	queue_envelope_free(env);
	queue_spool_free(sp);
}

void notice_check(struct delivery *d)
{
	const struct config *conf = d->conf;
	struct queue_summary s;
	struct statvfs fs;
	char subject[200], text[1200];

	if (!(conf->notify & CONF_NOTIFY_RESOURCE) || d->stopping || !d->queue)
		return;
	if (conf->queue_warn && queue_summary(d->queue, &s) == 0) {
		int over = s.messages > conf->queue_warn;
		if (over && !d->queue_warned) {
			long age = s.oldest_arrival ? (long)(time(NULL) - s.oldest_arrival) : 0;
			snprintf(subject, sizeof subject, "%llu messages queued (queue_warn %u)",
			    (unsigned long long)s.messages, conf->queue_warn);
			snprintf(text, sizeof text, "The queue holds %llu messages, more than "
			    "queue_warn %u.\r\nThe oldest has waited %ld minutes.\r\n\r\n"
			    "`relayctl stats` shows where they are going, `relayctl queue`\r\n"
			    "why each one waits.  No further notice until the queue is\r\n"
			    "back under queue_warn.\r\n", (unsigned long long)s.messages,
			    conf->queue_warn, age / 60);
			send_notice(d, subject, text);
		}
		d->queue_warned = over;
	}
	if (statvfs(conf->queue_dir, &fs) == 0 && fs.f_blocks > 0) {
		unsigned long long used = fs.f_blocks - fs.f_bfree, avail = used + fs.f_bavail;
		unsigned percent = avail ? (unsigned)(used * 100 / avail) : 0;
		int over = percent > DISK_WARN_PERCENT;
		if (over && !d->disk_warned) {
			snprintf(subject, sizeof subject, "the queue's disk is %u%% full", percent);
			snprintf(text, sizeof text, "The file system of the queue (%s) is %u%% "
			    "full.\r\nWhen it is full, relayd answers 452 4.3.1 and mail waits "
			    "at the\r\nclients.  No further notice until it is under %d%% "
			    "again.\r\n", conf->queue_dir, percent, DISK_WARN_PERCENT);
			send_notice(d, subject, text);
		}
		d->disk_warned = over;
	}
}
