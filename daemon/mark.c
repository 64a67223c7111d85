/*
 * mark - encode and decode the classification mark (layout in mark.h).
 */
#include "mark.h"

uint32_t
mark_encode(const struct mark_fields *f)
{
	uint32_t m = 0;

	m |= ((uint32_t)f->decision << MARK_DECISION_SHIFT) & MARK_DECISION_MASK;
	if (f->inbound)
		m |= MARK_INBOUND;
	if (f->zone >= 0 && f->zone < MARK_MAX_INDEX)
		m |= (uint32_t)(f->zone + 1) << MARK_ZONE_SHIFT;
	if (f->policy >= 0 && f->policy < MARK_MAX_INDEX)
		m |= (uint32_t)(f->policy + 1) << MARK_POLICY_SHIFT;
	return m;
}

int
mark_decode(uint32_t mark, struct mark_fields *f)
{
	f->decision = (enum decision)((mark & MARK_DECISION_MASK) >> MARK_DECISION_SHIFT);
	f->inbound = (mark & MARK_INBOUND) != 0;
	f->zone = (int)((mark >> MARK_ZONE_SHIFT) & 0xff) - 1;
	f->policy = (int)((mark >> MARK_POLICY_SHIFT) & 0xff) - 1;
	if (mark & 0xff000000u)
		return -1;
	return 0;
}

const char *
decision_name(enum decision d)
{
	switch (d) {
	case DECISION_NONE: return "none";
	case DECISION_INTERCEPT: return "intercept";
	case DECISION_BYPASS: return "bypass";
	case DECISION_REJECT: return "reject";
	}
	return "invalid";
}
