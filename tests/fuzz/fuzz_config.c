/*
 * fuzz_config - config_parse on arbitrary bytes.
 *
 * Besides memory errors (ASan/UBSan), checks what a successful parse
 * promises its users: bounded, terminated names, zone references that
 * resolve, no interface in two zones, a TLS profile's fixed reference name
 * is a host name, no action that could never deliver; and that a failed
 * parse always says
 * where: "fuzz.conf:LINE: ..." or "fuzz.conf: ...".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

static void
check_name(const char *s, size_t max)
{
	CHECK(memchr(s, '\0', max) != NULL);
}

static void
check_valid(const struct config *c)
{
	CHECK(c->n_zones >= 0 && c->n_zones <= CONF_MAX_ZONES);
	CHECK(c->n_policies >= 0 && c->n_policies <= CONF_MAX_POLICIES);
	CHECK(c->listen_port >= 1);
	for (int i = 0; i < c->n_zones; i++) {
		const struct conf_zone *z = &c->zones[i];

		check_name(z->name, sizeof(z->name));
		CHECK(z->name[0] != '\0');
		CHECK(config_zone_index(c, z->name) == i);
		CHECK(z->n_ifaces >= 0 && z->n_ifaces <= CONF_MAX_IFACES);
		for (int j = 0; j < z->n_ifaces; j++) {
			check_name(z->ifaces[j], IFNAMSIZ);
			CHECK(z->ifaces[j][0] != '\0');
			CHECK(config_zone_of_iface(c, z->ifaces[j]) == i);
		}
	}
	for (int i = 0; i < c->n_policies; i++) {
		const struct conf_policy *p = &c->policies[i];

		check_name(p->name, sizeof(p->name));
		check_name(p->action, sizeof(p->action));
		CHECK(p->n_from >= 0 && p->n_from <= CONF_MAX_ZONEREFS);
		CHECK(p->n_to >= 0 && p->n_to <= CONF_MAX_ZONEREFS);
		CHECK(p->n_src >= 0 && p->n_src <= CONF_MAX_PREFIXES);
		CHECK(p->n_dst >= 0 && p->n_dst <= CONF_MAX_PREFIXES);
		for (int j = 0; j < p->n_from; j++)
			CHECK(p->from[j] >= 0 && p->from[j] < c->n_zones);
		for (int j = 0; j < p->n_to; j++)
			CHECK(p->to[j] >= 0 && p->to[j] < c->n_zones);
		CHECK(p->type != POLICY_PROXY || p->action[0] != '\0');
		CHECK(strcmp(tls_support_name(p->tls_support), "invalid") != 0);
	}
	/* TLS profiles: a fixed reference name is a host name; none otherwise */
	for (int i = 0; i < c->n_profiles; i++) {
		const struct conf_tls_profile *t = &c->profiles[i];

		check_name(t->no_ref_name, sizeof(t->no_ref_name));
		if (t->no_ref == NOREF_NAME)
			CHECK(config_valid_hostname(t->no_ref_name));
		else
			CHECK(t->no_ref_name[0] == '\0');
	}
	/* no action that no session could ever satisfy */
	for (int i = 0; i < c->n_actions; i++) {
		const struct conf_action *a = &c->actions[i];

		CHECK(a->profile >= 0 && a->profile < c->n_profiles);
		if (a->tls_action == TLS_ACTION_DROP)
			CHECK(a->sender_enc != ENC_REQUIRED && a->recipient_enc != ENC_REQUIRED);
		if (a->tls_action == TLS_ACTION_INSPECT && a->sender_enc == ENC_REQUIRED &&
		    a->recipient_enc == ENC_NONE)
			CHECK(a->allow_cleartext_relay);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config *c; /* large: on the heap, once */
	char err[256];

	if (c == NULL && (c = malloc(sizeof(*c))) == NULL)
		abort();
	memset(err, 'Z', sizeof(err));
	if (config_parse(c, "fuzz.conf", (const char *)data, size, err, sizeof(err)) == 0) {
		check_valid(c);
		CHECK(err[0] == '\0');
		/* what a parse allocated (the actions' rules) goes with the next one */
		config_free(c);
	} else {
		CHECK(memchr(err, '\0', sizeof(err)) != NULL);
		CHECK(strncmp(err, "fuzz.conf:", 10) == 0);
	}
	return 0;
}
