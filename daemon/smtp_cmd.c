/*
 * smtp_cmd - the command side of the SMTP engine: the client's command
 * lines, the command table (which states allow which command, which end a
 * pipelined group) and one handler per command.  A handler either answers
 * locally (reply_local) or forwards a canonical command upstream
 * (reply_forward); it never writes to either leg itself.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "action_rules.h"
#include "log.h"
#include "smtp_int.h"
#include "stats.h"
#include "template.h"
#include "util.h"

/* The transaction states a command may be allowed in. */
enum tstate {
	TS_INIT = 1,  /* no HELO/EHLO yet */
	TS_READY = 2, /* no transaction */
	TS_MAIL = 4,  /* MAIL sent, no RCPT */
	TS_RCPT = 8,  /* MAIL and at least one RCPT sent */
};
#define TS_ANY (TS_INIT | TS_READY | TS_MAIL | TS_RCPT)
#define TS_TXN (TS_MAIL | TS_RCPT)

static enum tstate
tstate(const struct smtp_engine *e)
{
	if (!(e->flags & EF_HELO))
		return TS_INIT;
	if (!(e->tflags & TF_MAIL))
		return TS_READY;
	return e->txn.rcpt_sent ? TS_RCPT : TS_MAIL;
}

static void cmd_helo(struct smtp_engine *, struct smtp_cmd *);
static void cmd_mail(struct smtp_engine *, struct smtp_cmd *);
static void cmd_rcpt(struct smtp_engine *, struct smtp_cmd *);
static void cmd_data(struct smtp_engine *, struct smtp_cmd *);
static void cmd_rset(struct smtp_engine *, struct smtp_cmd *);
static void cmd_noop(struct smtp_engine *, struct smtp_cmd *);
static void cmd_quit(struct smtp_engine *, struct smtp_cmd *);
static void cmd_help(struct smtp_engine *, struct smtp_cmd *);
static void cmd_vrfy(struct smtp_engine *, struct smtp_cmd *);
static void cmd_auth(struct smtp_engine *, struct smtp_cmd *);

/*
 * One row per command: the transaction states it is allowed in, the reply
 * when it is not, and whether it must end a pipelined group (RFC 2920 3.1;
 * AUTH per RFC 4954 4).  Out-of-state commands are refused here, in one
 * place, before any handler runs.
 */
static const struct cmd_spec {
	enum smtp_verb verb;
	unsigned states;
	bool group_end;
	void (*fn)(struct smtp_engine *, struct smtp_cmd *);
	const char *refuse_init;  /* before HELO/EHLO */
	const char *refuse_other; /* in another state */
} cmd_table[] = {
	{ SMTP_EHLO, TS_ANY, true, cmd_helo, NULL, NULL },
	{ SMTP_HELO, TS_ANY, true, cmd_helo, NULL, NULL },
	{ SMTP_MAIL, TS_READY, false, cmd_mail, R_HELO_FIRST,
	    "503 5.5.1 Error: nested MAIL command" },
	{ SMTP_RCPT, TS_TXN, false, cmd_rcpt, R_HELO_FIRST, "503 5.5.1 Error: need MAIL command" },
	{ SMTP_DATA, TS_RCPT, true, cmd_data, R_HELO_FIRST, R_NEED_RCPT },
	{ SMTP_BDAT, TS_RCPT, false, msg_bdat, R_HELO_FIRST, R_NEED_RCPT },
	{ SMTP_RSET, TS_ANY, false, cmd_rset, NULL, NULL },
	{ SMTP_NOOP, TS_ANY, true, cmd_noop, NULL, NULL },
	{ SMTP_QUIT, TS_ANY, true, cmd_quit, NULL, NULL },
	{ SMTP_HELP, TS_ANY, true, cmd_help, NULL, NULL },
	{ SMTP_VRFY, TS_ANY, true, cmd_vrfy, NULL, NULL },
	{ SMTP_EXPN, TS_ANY, true, cmd_vrfy, NULL, NULL },
	{ SMTP_AUTH, TS_READY, true, cmd_auth, "503 5.5.1 Error: send EHLO first",
	    "503 5.5.1 Error: AUTH not allowed during a mail transaction" },
	{ SMTP_STARTTLS, TS_ANY, true, tlsi_starttls, NULL, NULL },
};

void
cmd_refuse(struct smtp_engine *e, const struct smtp_cmd *cmd, const char *reply)
{
	char word[40];

	log_sid_limited(&e->loglim, LOG_LVL_INFO, e->id, "smtp refused command=%s reply=\"%.3s\"",
	    log_quote(word, sizeof(word), cmd->word, strlen(cmd->word)), reply);
	reply_local(e, 0, reply);
}

/* The action's inspection settings (none without an action: allow everything). */
static const struct action_rules *
rules(const struct smtp_engine *e)
{
	const struct conf_action *a = smtp_action(e);

	return a ? config_rules(a) : NULL;
}

/*
 * The reply for an item a rule refused: the first line of the action's
 * deny message (its reply form, template.h) after code and status.
 */
static void
deny_reply(const struct smtp_engine *e, const char *code, const char *reason, char *out,
    size_t outsz)
{
	const struct action_rules *r = rules(e);
	const char *tpl = r && r->deny_message[0] ? r->deny_message : tpl_default;
	const char *nl = strchr(tpl, '\n');
	struct tpl_vars v = { .reason = reason, .action = "denied" };
	char text[300];

	tpl_render(tpl, nl ? (size_t)(nl - tpl) : strlen(tpl), &v, TPL_REPLY, text, sizeof(text));
	snprintf(out, outsz, "%s %s", code, text);
}

/*
 * Run item through the action's ruleset of this kind.  Returns true when
 * the command must not go on: it was refused (deny: the session goes on)
 * or the session is ending (drop, block: 421 and close).
 */
static bool
rule_refuses(struct smtp_engine *e, enum arules_kind kind, const char *what, const char *item)
{
	const struct action_rules *r = rules(e);
	struct rule_result res;
	char q[LOG_QUOTE_SIZE(SMTP_PATH_MAX + 2)], rq[LOG_QUOTE_SIZE(RULE_PATTERN_MAX + 40)];
	char rule[RULE_PATTERN_MAX + 40], reason[400], reply[400];

	if (r == NULL)
		return false;
	res = ruleset_match(arules_rs(r, kind), item, strlen(item));
	if (res.action == RULE_ALLOW && !(res.flags & (RULE_F_LOG | RULE_F_ALARM)) && !res.error)
		return false;
	log_quote_str(q, sizeof(q), item);
	if (res.rule)
		rule_format(res.rule, rule, sizeof(rule));
	else
		snprintf(rule, sizeof(rule), "default");
	log_quote_str(rq, sizeof(rq), rule);
	log_sid_limited(&e->loglim, LOG_LVL_INFO, e->id, "smtp rule ruleset=%s item=%s rule=%s action=%s",
	    arules_kind_key(kind), q, rq, rule_action_name(res.action));
	if (res.flags & RULE_F_ALARM) {
		log_alarm(e->id, "ruleset=%s item=%s rule=%s action=%s", arules_kind_key(kind), q, rq,
		    rule_action_name(res.action));
		stats_add(STAT_ALARMS, 1);
	}
	if (res.action == RULE_ALLOW || res.action == RULE_STRIP)
		return false;
	snprintf(reason, sizeof(reason), "%s %s is not allowed", what, item);
	if (res.action == RULE_DENY) {
		deny_reply(e, "550 5.7.1", reason, reply, sizeof(reply));
		reply_local(e, 0, reply);
		return true;
	}
	/* drop / block: the session ends; the client may try again later (421) */
	deny_reply(e, "421 4.7.1", reason, reply, sizeof(reply));
	reply_local(e, 0, reply);
	if (res.action == RULE_BLOCK)
		smtp_block_client(e, arules_kind_key(kind), reason);
	smtp_enter(e, SP_CLOSING);
	return true;
}

/* Source routes, 8-bit local parts and the address rules (sender: which 0, recipient: 1). */
static bool
address_refused(struct smtp_engine *e, const struct smtp_cmd *cmd, int which)
{
	const struct action_rules *r = rules(e);
	const char *what = which == 0 ? "sender" : "recipient";
	char reason[400], reply[400];

	if (r == NULL || cmd->null_path)
		return false;
	if (!r->source_routed_allow && arules_source_routed(cmd->path, cmd->routed)) {
		log_sid_limited(&e->loglim, LOG_LVL_INFO, e->id,
		    "smtp rule setting=source-routed action=deny");
		snprintf(reason, sizeof(reason), "source-routed %s addresses are not allowed", what);
		deny_reply(e, "550 5.7.1", reason, reply, sizeof(reply));
		reply_local(e, 0, reply);
		return true;
	}
	if (!r->local_8bit_allow && arules_local_8bit(cmd->path)) {
		log_sid_limited(&e->loglim, LOG_LVL_INFO, e->id,
		    "smtp rule setting=local-part-8bit action=deny");
		snprintf(reason, sizeof(reason), "8-bit characters in the %s's local part are not "
		    "allowed", what);
		deny_reply(e, "553 5.6.7", reason, reply, sizeof(reply));
		reply_local(e, 0, reply);
		return true;
	}
	return rule_refuses(e, which == 0 ? AR_MAIL_FROM : AR_RCPT_TO, what, cmd->path);
}

/*
 * The address as it goes upstream: the first rewrite that matches, when
 * its result is still a valid path (a rewrite must never produce a line
 * we would refuse from a client).
 */
static const char *
rewritten(struct smtp_engine *e, const struct smtp_cmd *cmd, int which, char *buf, size_t bufsz)
{
	const struct action_rules *r = rules(e);
	char check[SMTP_PATH_MAX + 8], q1[LOG_QUOTE_SIZE(SMTP_PATH_MAX)];
	char q2[LOG_QUOTE_SIZE(SMTP_PATH_MAX)];
	struct smtp_cmd tmp;
	const char *why = NULL;
	unsigned line = 0;

	if (r == NULL || cmd->null_path || r->nrw[which] == 0)
		return cmd->path;
	if (arules_rewrite(r, which, cmd->path, buf, bufsz, &line) <= 0)
		return cmd->path;
	snprintf(check, sizeof(check), "<%s>", buf);
	if (strlen(buf) > SMTP_PATH_MAX ||
	    smtp_path_parse(check, &tmp, false, which == 1, &why) < 0 || tmp.routed ||
	    strcmp(tmp.path, buf) != 0) {
		log_sid(LOG_LVL_WARN, e->id, "smtp rewrite refused result=%s line=%u reason=invalid",
		    log_quote_str(q2, sizeof(q2), buf), line);
		return cmd->path;
	}
	log_sid(LOG_LVL_INFO, e->id, "smtp rewrite %s from=%s to=%s line=%u",
	    which == 0 ? "mail-from" : "rcpt-to", log_quote_str(q1, sizeof(q1), cmd->path),
	    log_quote_str(q2, sizeof(q2), buf), line);
	return buf;
}

/* Was this extension shown to the client in the EHLO reply? */
static bool
shown(const struct smtp_engine *e, unsigned cap)
{
	return (e->flags & EF_ESMTP) && (e->shown.flags & cap) != 0;
}

static bool
all_digits(const char *v, size_t max)
{
	size_t n = strlen(v);

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)v[i]))
			return false;
	return true;
}

static void
cmd_helo(struct smtp_engine *e, struct smtp_cmd *cmd)
{
	/* EHLO/HELO resets any transaction (RFC 5321 4.1.4) */
	msg_txn_reset(e);
	if (rule_refuses(e, AR_GREETING, "the greeting", cmd->arg))
		return;
	snprintf(e->helo, sizeof(e->helo), "%s", cmd->arg);
	if (cmd->verb == SMTP_EHLO)
		reply_forward(e, PK_EHLO, PF_GROUP_END, e->lim->t_server_command, "EHLO %s",
		    cmd->arg);
	else
		reply_forward(e, PK_HELO, PF_GROUP_END, e->lim->t_server_command, "HELO %s",
		    cmd->arg);
}

/* A MAIL parameter the client may use (it was shown) and whose value is well-formed. */
static const char *
mail_param_check(const struct smtp_engine *e, const char *k, const char *v, bool *utf8)
{
	if (!strcmp(k, "SIZE") && shown(e, CAP_SIZE)) {
		if (v == NULL || !all_digits(v, 20))
			return "501 5.5.4 Syntax error in SIZE parameter";
		if (strtoull(v, NULL, 10) > e->lim->max_message_size)
			return "552 5.3.4 Message size exceeds fixed maximum message size";
	} else if (!strcmp(k, "BODY") && shown(e, CAP_8BITMIME)) {
		if (v == NULL || (strcasecmp(v, "7BIT") && strcasecmp(v, "8BITMIME")))
			return "501 5.5.4 Unsupported BODY parameter value";
	} else if (!strcmp(k, "SMTPUTF8") && shown(e, CAP_SMTPUTF8)) {
		if (v != NULL)
			return "501 5.5.4 SMTPUTF8 takes no value";
		*utf8 = true;
	} else if (!strcmp(k, "RET") && shown(e, CAP_DSN)) {
		if (v == NULL || (strcasecmp(v, "FULL") && strcasecmp(v, "HDRS")))
			return "501 5.5.4 Syntax error in RET parameter";
	} else if (!strcmp(k, "ENVID") && shown(e, CAP_DSN)) {
		if (v == NULL || strlen(v) > 100 || !smtp_xtext_valid(v))
			return "501 5.5.4 Syntax error in ENVID parameter";
	} else if (!strcmp(k, "AUTH") && shown(e, CAP_AUTH)) {
		if (v == NULL || (strcmp(v, "<>") && !smtp_xtext_valid(v)))
			return "501 5.5.4 Syntax error in AUTH parameter";
	} else {
		return "555 5.5.4 Unsupported MAIL parameter";
	}
	return NULL;
}

static void
cmd_mail(struct smtp_engine *e, struct smtp_cmd *cmd)
{
	char params[SMTP_CMDLINE_MAX];
	bool utf8 = false;

	for (int i = 0; i < cmd->nparams; i++) {
		const char *why = mail_param_check(e, cmd->params[i].key, cmd->params[i].value,
		    &utf8);
		if (why) {
			cmd_refuse(e, cmd, why);
			return;
		}
	}
	if (cmd->utf8 && !utf8) {
		cmd_refuse(e, cmd, "553 5.6.7 Non-ASCII address requires SMTPUTF8");
		return;
	}
	/* The legs' encryption (tls_intercept.c): the mail stays with the sender until it holds. */
	const char *tls_why = tlsi_mail_refusal(e);
	if (tls_why) {
		cmd_refuse(e, cmd, tls_why);
		return;
	}
	if (smtp_params_render(cmd, params, sizeof(params)) < 0) {
		cmd_refuse(e, cmd, "501 5.5.4 Too many parameters");
		return;
	}
	if (up_mail_refusal(e)) {
		cmd_refuse(e, cmd, up_mail_refusal(e));
		return;
	}
	if (address_refused(e, cmd, 0))
		return;
	char rw[SMTP_PATH_MAX + 1];
	const char *path = rewritten(e, cmd, 0, rw, sizeof(rw));
	msg_txn_reset(e);
	e->tflags |= TF_MAIL | (utf8 ? TF_SMTPUTF8 : 0);
	e->txn.mail_from = xstrdup(path);
	reply_forward(e, PK_MAIL, 0, e->lim->t_server_command, "MAIL FROM:<%s>%s", path, params);
}

static bool
notify_valid(const char *v)
{
	char tmp[64];
	char *save = NULL;

	if (strcasecmp(v, "NEVER") == 0)
		return true;
	if (strlen(v) >= sizeof(tmp))
		return false;
	snprintf(tmp, sizeof(tmp), "%s", v);
	for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save))
		if (strcasecmp(t, "SUCCESS") && strcasecmp(t, "FAILURE") && strcasecmp(t, "DELAY"))
			return false;
	return v[0] != ',' && v[strlen(v) - 1] != ',';
}

static void
cmd_rcpt(struct smtp_engine *e, struct smtp_cmd *cmd)
{
	char params[SMTP_CMDLINE_MAX];

	if (e->txn.rcpt_sent >= e->lim->max_recipients) {
		cmd_refuse(e, cmd, "452 4.5.3 Error: too many recipients");
		return;
	}
	for (int i = 0; i < cmd->nparams; i++) {
		const char *k = cmd->params[i].key, *v = cmd->params[i].value;

		if (!strcmp(k, "NOTIFY") && shown(e, CAP_DSN)) {
			if (v == NULL || !notify_valid(v)) {
				cmd_refuse(e, cmd, "501 5.5.4 Syntax error in NOTIFY parameter");
				return;
			}
		} else if (!strcmp(k, "ORCPT") && shown(e, CAP_DSN)) {
			const char *semi = v ? strchr(v, ';') : NULL;
			if (semi == NULL || semi == v || strlen(v) > 500 ||
			    !smtp_xtext_valid(semi + 1)) {
				cmd_refuse(e, cmd, "501 5.5.4 Syntax error in ORCPT parameter");
				return;
			}
		} else {
			cmd_refuse(e, cmd, "555 5.5.4 Unsupported RCPT parameter");
			return;
		}
	}
	if (cmd->utf8 && !(e->tflags & TF_SMTPUTF8)) {
		cmd_refuse(e, cmd, "553 5.6.7 Non-ASCII address requires SMTPUTF8");
		return;
	}
	if (smtp_params_render(cmd, params, sizeof(params)) < 0) {
		cmd_refuse(e, cmd, "501 5.5.4 Too many parameters");
		return;
	}
	if (address_refused(e, cmd, 1))
		return;
	char rw[SMTP_PATH_MAX + 1];
	const char *path = rewritten(e, cmd, 1, rw, sizeof(rw));
	e->txn.rcpts = xrealloc(e->txn.rcpts, (e->txn.nrcpts + 1) * sizeof(*e->txn.rcpts));
	e->txn.rcpts[e->txn.nrcpts++] = xstrdup(path);
	e->txn.rcpt_sent++;
	reply_forward(e, PK_RCPT, 0, e->lim->t_server_command, "RCPT TO:<%s>%s", path, params);
}

static void
cmd_data(struct smtp_engine *e, struct smtp_cmd *cmd)
{
	if (e->tflags & TF_BDAT) {
		cmd_refuse(e, cmd, "503 5.5.1 Error: DATA after BDAT in one transaction");
		return;
	}
	msg_data_cmd(e);
}

static void
cmd_rset(struct smtp_engine *e, struct smtp_cmd *cmd)
{
	(void)cmd;
	msg_txn_reset(e);
	reply_forward(e, PK_OTHER, 0, e->lim->t_server_command, "RSET");
}

static void
cmd_noop(struct smtp_engine *e, struct smtp_cmd *cmd)
{
	(void)cmd;
	reply_forward(e, PK_OTHER, PF_GROUP_END, e->lim->t_server_command, "NOOP");
}

static void
cmd_quit(struct smtp_engine *e, struct smtp_cmd *cmd)
{
	(void)cmd;
	reply_forward(e, PK_QUIT, PF_GROUP_END, e->lim->t_server_command, "QUIT");
	/* Whatever the client sends after QUIT is ignored. */
	smtp_enter(e, SP_CLOSING);
}

static void
cmd_help(struct smtp_engine *e, struct smtp_cmd *cmd)
{
	if (cmd->arg[0])
		reply_forward(e, PK_OTHER, PF_GROUP_END, e->lim->t_server_command, "HELP %s",
		    cmd->arg);
	else
		reply_forward(e, PK_OTHER, PF_GROUP_END, e->lim->t_server_command, "HELP");
}

static void
cmd_vrfy(struct smtp_engine *e, struct smtp_cmd *cmd)
{
	bool vrfy = cmd->verb == SMTP_VRFY;

	if (vrfy ? !e->lim->allow_vrfy : !e->lim->allow_expn) {
		cmd_refuse(e, cmd, vrfy ? "502 5.5.1 Error: VRFY command is disabled"
		    : "502 5.5.1 Error: EXPN command is disabled");
		return;
	}
	reply_forward(e, PK_OTHER, PF_GROUP_END, e->lim->t_server_command, "%s %s",
	    vrfy ? "VRFY" : "EXPN", cmd->arg);
}

static void
cmd_auth(struct smtp_engine *e, struct smtp_cmd *cmd)
{
	if (!shown(e, CAP_AUTH)) {
		cmd_refuse(e, cmd, "503 5.5.1 Error: authentication not enabled");
		return;
	}
	if (e->flags & EF_AUTH) {
		cmd_refuse(e, cmd, "503 5.5.1 Error: already authenticated");
		return;
	}
	/* Only a mechanism the client was shown (the action may narrow the upstream's). */
	size_t ml = strcspn(cmd->arg, " ");
	bool shown_mech = false;
	for (const char *a = e->shown.auth; *a;) {
		size_t al = strcspn(a, " ");
		if (al == ml && strncasecmp(a, cmd->arg, ml) == 0)
			shown_mech = true;
		a += al;
		while (*a == ' ')
			a++;
	}
	if (!shown_mech) {
		cmd_refuse(e, cmd, "504 5.5.4 Unrecognized authentication type");
		return;
	}
	/* The payload is relayed, never logged. */
	log_sid(LOG_LVL_INFO, e->id, "smtp auth started");
	reply_forward(e, PK_AUTH, PF_GROUP_END, e->lim->t_server_command, "AUTH %s", cmd->arg);
}

/* The line after a 334: an AUTH response (base64 or "*"), relayed verbatim. */
static void
auth_response(struct smtp_engine *e, char *line, size_t len)
{
	bool ok = len > 0;

	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)line[i]) && line[i] != '+' && line[i] != '/' &&
		    line[i] != '=' && line[i] != '*')
			ok = false;
	smtp_enter(e, SP_COMMAND);
	/* A malformed response cancels the exchange upstream ("*"): the upstream's 501 answers it. */
	if (ok)
		reply_forward(e, PK_AUTH, PF_GROUP_END, e->lim->t_server_command, "%.*s", (int)len,
		    line);
	else
		reply_forward(e, PK_AUTH, PF_GROUP_END, e->lim->t_server_command, "*");
	OPENSSL_cleanse(line, len);
}

/* The command's group ends with its reply (forwarded or answered here). */
static void
mark_group_end(struct smtp_engine *e)
{
	if (e->tail && !pend_answered(e->tail) && !(e->tail->flags & PF_GROUP_END)) {
		e->tail->flags |= PF_GROUP_END;
		e->flags |= EF_GROUP_WAIT;
	} else if (e->tail && pend_answered(e->tail)) {
		/* answered locally: the group ends with this reply */
		e->tail->flags |= PF_GROUP_END;
		e->flags |= EF_GROUP_WAIT;
	}
}

static bool
printable_line(const char *line, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)line[i] < 32 || (unsigned char)line[i] > 126)
			return false;
	return len > 0;
}

static void
dispatch(struct smtp_engine *e, char *line, size_t len)
{
	struct smtp_cmd cmd;
	const char *err = NULL;

	if (smtp_cmd_parse(line, len, &cmd, &err) < 0) {
		char word[40];
		log_sid_limited(&e->loglim, LOG_LVL_INFO, e->id,
		    "smtp refused command=%s reply=\"%.3s\"",
		    log_quote(word, sizeof(word), line, len < 8 ? len : 8), err);
		reply_local(e, 0, err);
		/* A BDAT we cannot size leaves us unable to find the next command. */
		if (len >= 4 && strncasecmp(line, "BDAT", 4) == 0) {
			e->close_reply = NULL;
			smtp_enter(e, SP_CLOSING);
			reply_flush(e);
		}
		return;
	}
	if (cmd.verb == SMTP_HTTP) {
		char word[40];
		log_sid(LOG_LVL_WARN, e->id, "smtp refused command=%s reason=http",
		    log_quote_str(word, sizeof(word), cmd.word));
		reply_local(e, 0, "500 5.5.1 Error: this is an SMTP server, not HTTP");
		smtp_enter(e, SP_CLOSING);
		return;
	}
	if (cmd.verb == SMTP_UNKNOWN) {
		const struct action_rules *r = rules(e);
		/*
		 * Only when the action allows it: a command smtpgw does not know
		 * goes upstream as it came (CR, LF and NUL were refused by the
		 * parser; controls are refused here), one per group.
		 */
		if (r && r->unknown_allow && printable_line(line, len)) {
			char word[40];
			log_sid_limited(&e->loglim, LOG_LVL_INFO, e->id,
			    "smtp forwarded unknown command=%s", log_quote_str(word, sizeof(word),
			    cmd.word));
			reply_forward(e, PK_OTHER, PF_GROUP_END, e->lim->t_server_command, "%.*s",
			    (int)len, line);
			return;
		}
		cmd_refuse(e, &cmd, "500 5.5.2 Error: command not recognized");
		return;
	}
	/*
	 * A BDAT transaction converted to DATA has the destination reading
	 * message lines: a command forwarded now would become content the
	 * inspector never saw.  Until BDAT LAST only chunks go on; RSET and
	 * QUIT end the message the one way DATA allows, without a dot.
	 */
	if ((e->tflags & (TF_BDAT | TF_BDAT_CONVERT | TF_BDAT_FAILED)) ==
	    (TF_BDAT | TF_BDAT_CONVERT) && !(e->flags & EF_UP_DEAD) && cmd.verb != SMTP_BDAT) {
		if (cmd.verb == SMTP_RSET || cmd.verb == SMTP_QUIT) {
			/* After RSET the session goes on: a new upstream (smtp_upstream.c). */
			if (cmd.verb == SMTP_RSET)
				e->flags |= EF_RELINK;
			reply_upstream_abort(e, "message abandoned between BDAT chunks");
			msg_txn_reset(e);
			reply_local(e, 0, cmd.verb == SMTP_QUIT ? R_BYE : R_OK);
			if (cmd.verb == SMTP_QUIT)
				smtp_enter(e, SP_CLOSING);
			else
				up_relink(e);
			return;
		}
		cmd_refuse(e, &cmd, "503 5.5.1 Error: only BDAT, RSET or QUIT may follow BDAT");
		return;
	}
	const struct conf_action *act = smtp_action(e);
	if (act && act->sender_enc == ENC_REQUIRED && !(e->flags & EF_CLIENT_TLS) &&
	    cmd.verb != SMTP_EHLO && cmd.verb != SMTP_NOOP && cmd.verb != SMTP_STARTTLS &&
	    cmd.verb != SMTP_QUIT) {
		cmd_refuse(e, &cmd, "530 5.7.0 Must issue a STARTTLS command first");
		/* A refused BDAT's chunk is data, never commands: skip it. */
		if (cmd.verb == SMTP_BDAT)
			msg_bdat_skip(e, &cmd);
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(cmd_table); i++) {
		const struct cmd_spec *c = &cmd_table[i];
		enum tstate ts = tstate(e);

		if (c->verb != cmd.verb)
			continue;
		if (!(c->states & ts)) {
			cmd_refuse(e, &cmd, ts == TS_INIT ? c->refuse_init : c->refuse_other);
			/* A refused BDAT's chunk is data, never commands: skip it. */
			if (cmd.verb == SMTP_BDAT)
				msg_bdat_skip(e, &cmd);
			return;
		}
		c->fn(e, &cmd);
		if (c->group_end)
			mark_group_end(e);
		return;
	}
	cmd_refuse(e, &cmd, "502 5.5.1 Error: command not implemented");
}

/*
 * Improper pipelining: the replies owed so far still go out first
 * (nothing lost, nothing twice), then a 421 and the close.
 */
void
cmd_violation(struct smtp_engine *e, const char *what)
{
	log_sid(LOG_LVL_WARN, e->id, "smtp protocol-error reason=%s pending=%u", what, e->npend);
	e->flags |= EF_VIOLATION;
	smtp_enter(e, SP_CLOSING);
	e->close_reply = R_PIPELINING;
	buf_reset(io_in(e->cio));
	reply_flush(e);
}

/* A line that may be up to SMTP_AUTHLINE_MAX: AUTH and the SASL responses after it. */
static bool
auth_line(const struct smtp_engine *e, const struct buf *in)
{
	return e->phase == SP_AUTH ||
	    (buf_len(in) >= 5 && strncasecmp(buf_head(in), "AUTH ", 5) == 0);
}

/* The client's command lines (SP_COMMAND, SP_AUTH, SP_NOUP). */
void
cmd_input(struct smtp_engine *e)
{
	struct buf *in = io_in(e->cio);
	char line[SMTP_AUTHLINE_MAX + 1];

	while ((e->phase == SP_COMMAND || e->phase == SP_AUTH || e->phase == SP_NOUP) &&
	    !smtp_stopped(e) && buf_len(in) > 0) {
		size_t len, consumed;
		enum smtp_line st;

		/* Bytes after a group-ending command, before its reply: never executed. */
		if (e->flags & EF_GROUP_WAIT) {
			cmd_violation(e, "pipelining");
			return;
		}
		if (e->npend >= SMTP_MAX_PENDING) {
			/*
			 * The pipelining depth is reached: what is answered already
			 * goes out first.  Only replies owed by the upstream can keep
			 * us here, and each one that arrives runs us again.
			 */
			reply_flush(e);
			if (smtp_stopped(e))
				return;
			if (e->npend >= SMTP_MAX_PENDING) {
				io_pause(e->cio);
				break;
			}
			continue;
		}
		st = smtp_line_split(buf_head(in), buf_len(in), SMTP_CMDLINE_MAX, &len, &consumed);
		if (st == SMTP_LINE_TOOLONG && auth_line(e, in))
			st = smtp_line_split(buf_head(in), buf_len(in), SMTP_AUTHLINE_MAX, &len,
			    &consumed);
		if (st == SMTP_LINE_PARTIAL)
			break;
		if (st == SMTP_LINE_TOOLONG) {
			log_sid_limited(&e->loglim, LOG_LVL_INFO, e->id, "smtp refused reason=line-too-long");
			reply_local(e, 0, "500 5.5.2 Error: line too long");
			smtp_enter(e, SP_CLOSING);
			buf_reset(in);
			break;
		}
		/* The recipient leg may go TLS first (tls_intercept.c): the line waits for it. */
		if (st == SMTP_LINE_OK && tlsi_recipient_tls(e, buf_head(in), len))
			break;
		memcpy(line, buf_head(in), len);
		buf_consume(in, consumed);
		/* A new command arrived complete: the wait for the next one starts over. */
		ev_timer_cancel(&e->ctimer);
		if (st == SMTP_LINE_BARE_LF) {
			log_sid_limited(&e->loglim, LOG_LVL_INFO, e->id, "smtp refused reason=bare-lf");
			reply_local(e, 0, "500 5.5.2 Error: bare LF in command line");
			continue;
		}
		if (e->phase == SP_AUTH) {
			auth_response(e, line, len);
		} else if (e->phase == SP_NOUP) {
			if (len == 4 && strncasecmp(line, "QUIT", 4) == 0)
				reply_local(e, 0, R_BYE);
			else
				reply_local(e, 0, R_UP_CLOSED_RETRY);
			smtp_enter(e, SP_CLOSING);
		} else {
			dispatch(e, line, len);
		}
		OPENSSL_cleanse(line, len);
		if (e->phase == SP_TLS_WAIT) {
			/* Plaintext pipelined after STARTTLS is never read as a command inside TLS. */
			if (buf_len(in) > 0)
				log_sid(LOG_LVL_WARN, e->id,
				    "smtp starttls plaintext-discarded bytes=%zu (command injection?)",
				    buf_len(in));
			buf_reset(in);
			io_pause(e->cio);
			break;
		}
	}
	reply_flush(e);
}
