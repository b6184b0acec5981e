/*-------------------------------------------------------------------------
 *
 * anchor.c
 *		test/sync/run.sh anchor_parse: sync/batch.c's anchor_parse() and
 *		anchor_format() against a table of inputs, the malformed and hostile
 *		values a {sync}:cursor could hold among them.  Exits 1 on the first
 *		difference.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "credits_sync.h"

#define H64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static const struct
{
	const char *in;
	const char *out;			/* NULL: must be refused */
}			cases[] = {
	{"/", "/"},
	{"5:-/", "5:-/"},
	{"5:-/7:9", "5:-/7:9"},
	{"/7:9", "/7:9"},
	{"5:" H64 "/7:9", "5:" H64 "/7:9"},
	{"9223372036854775807:" H64 "/9223372036854775807:9223372036854775807",
	"9223372036854775807:" H64 "/9223372036854775807:9223372036854775807"},
	{"9223372036854775808:-/", NULL},
	{"99999999999999999999:-/", NULL},
	{"/1:99999999999999999999", NULL},
	{" 1:-/", NULL},
	{"+1:-/", NULL},
	{"-1:-/", NULL},
	{"0:-/", NULL},
	{"1:ab/", NULL},
	{"1:" H64 "0/", NULL},
	{"1:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef/", NULL},
	{"1:-/ 2:3", NULL},
	{"1:-/2:-3", NULL},
	{"1:-/2:3x", NULL},
	{"1:-", NULL},
	{"1:-//", NULL},
	{"", NULL},
};

int
main(void)
{
	int			bad = 0;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		SyncAnchor	a;
		char		buf[128];
		bool		ok = anchor_parse(cases[i].in, &a);

		buf[0] = '\0';
		if (ok)
			anchor_format(&a, buf, sizeof(buf));
		if (ok != (cases[i].out != NULL) || (ok && strcmp(buf, cases[i].out) != 0))
		{
			printf("anchor \"%s\": %s \"%s\", want %s\n", cases[i].in,
				   ok ? "parsed as" : "refused", buf,
				   cases[i].out ? cases[i].out : "refused");
			bad = 1;
		}
	}
	printf("%zu anchors checked\n", sizeof(cases) / sizeof(cases[0]));
	return bad;
}
