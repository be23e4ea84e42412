/*
 * record — the queue's on-disk layout (DESIGN.md, Queue): the keys of the four
 * LMDB databases and the versioned binary records of envelopes and recipients.
 * Internal to queue/.  Decoding trusts nothing it reads: every length is
 * checked against the bytes that are there, and anything malformed gives -1.
 */
#ifndef RELAYD_QUEUE_RECORD_H
#define RELAYD_QUEUE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "queue/queue.h"

/* Bumped whenever a record's layout changes; decoders refuse versions they do not know. */
/* Envelopes: 2 added arrival's microseconds (version 1 is still read, as 0 of them). */
#define QUEUE_RECORD_VERSION 2
/* Recipients: 2 added flags, last_attempt and last_relay. */
#define QUEUE_RCPT_VERSION 2

/* A body is stored in chunks of this size, so no value is one huge overflow run. */
#define QUEUE_BODY_CHUNK (256 * 1024)

/*
 * Keys.  msg: the id.  body and rcpt: the id + a 4-byte big-endian number
 * (chunk, recipient index).  sched: 8-byte big-endian unix time + the id.
 * Big-endian so that LMDB's byte order is numeric order.
 */
#define QUEUE_KEY_SUB_LEN   (QUEUE_ID_LEN + 4)
#define QUEUE_KEY_SCHED_LEN (8 + QUEUE_ID_LEN)

/*
 * Where relayctl flush and release put a message in the schedule: due
 * before anything else, whatever the clock says, and a key that one
 * message's operations can always rebuild (admin.c).
 */
#define QUEUE_DUE_AT_ONCE 0

void queue_key_sub(unsigned char key[QUEUE_KEY_SUB_LEN], const char *id, uint32_t n);
void queue_key_sched(unsigned char key[QUEUE_KEY_SCHED_LEN], int64_t when, const char *id);

void queue_be32_put(unsigned char *p, uint32_t v);
void queue_be64_put(unsigned char *p, uint64_t v);
uint32_t queue_be32_get(const unsigned char *p);
uint64_t queue_be64_get(const unsigned char *p);

/*
 * Envelope record: everything in struct queue_envelope except id (the key) and
 * the recipients (their own records; only their count is stored here).
 * queue_record_envelope_len() is 0 when env cannot be stored: NULL sender, an
 * enum out of range, a string or recipient count too large.  Encode writes
 * exactly that many bytes.  Decode fills the strings and scalars of env, which
 * must hold no strings yet; on failure it leaves them NULL.
 */
size_t queue_record_envelope_len(const struct queue_envelope *env);
void queue_record_envelope_encode(const struct queue_envelope *env, unsigned char *buf);
int queue_record_envelope_decode(const void *data, size_t len, struct queue_envelope *env,
    uint32_t *nrcpts);

/* Recipient record, the same way.  The address must not be NULL. */
size_t queue_record_rcpt_len(const struct queue_rcpt *r);
void queue_record_rcpt_encode(const struct queue_rcpt *r, unsigned char *buf);
int queue_record_rcpt_decode(const void *data, size_t len, struct queue_rcpt *r);

/* Free the strings of one recipient (not the struct itself). */
void queue_rcpt_clear(struct queue_rcpt *r);

#endif
