/*
 * sniff - content types by content, and what is inside archives.
 *
 * sniff_type() asks libmagic for the MIME type of the first octets of a
 * decoded part (the declared Content-Type is the sender's claim; this is
 * what the octets are).  sniff_archive() opens an archive held in memory
 * with libarchive (zip, tar, 7z, rar, cab, iso9660, cpio, ar, lha, xar,
 * and gzip/bzip2/xz/lzma/zstd/lz4/lzip/compress around them or around a
 * single file) and reports every entry: its name, its sniffed type, its
 * size; archives inside are opened in turn, to a bounded depth.
 *
 * Bounds (an attachment is hostile and may be a bomb):
 *  - at most max_entries entries over all nesting levels;
 *  - at most max_total uncompressed octets read in all, and per entry
 *    only the first sniff_bytes unless the entry is itself an archive to
 *    open; a nested archive is read whole only up to max_entry_size;
 *  - zip entries not needed are skipped without inflating them (the
 *    central directory gives their place); other formats are read and
 *    discarded against the max_total budget, never skipped unbounded;
 *  - memory: sniff_bytes + one buffer of at most max_entry_size per open
 *    nesting level (so depth * max_entry_size in the worst case);
 *  - libmagic runs with its own limits lowered (indirection, name/use
 *    recursion, regex and encoding scan lengths) and sees at most
 *    sniff_bytes octets.
 * Filters that libarchive would run as an external program (lrzip, lzop,
 * grzip) are never enabled, nor the mtree format (it reads the files an
 * mtree names from the local disk).
 *
 * Unopenable archives are reported, never silently passed: encrypted
 * entries, nesting deeper than max_depth, too many entries, the budget
 * exhausted, or a corrupt / unrecognised archive.  The first such problem
 * is the result's status; the walk goes on past problems where it can
 * (an encrypted entry's siblings are still listed).
 *
 * The magic database: SNIFF_MAGIC_DEFAULT is Debian's libmagic-mgc file;
 * the appliance image must carry it (about 8 MiB).  Load it once in the
 * master before forking so the workers share the pages.
 */
#ifndef SMTPGW_SNIFF_H
#define SMTPGW_SNIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNIFF_MAGIC_DEFAULT "/usr/share/misc/magic.mgc"
#define SNIFF_TYPE_MAX 128
#define SNIFF_NAME_MAX 256

struct sniff;

struct sniff_limits {
	unsigned max_depth;      /* archives inside archives: 1 = only the outer one */
	unsigned max_entries;    /* over the whole walk */
	uint64_t max_entry_size; /* a nested archive read into memory */
	uint64_t max_total;      /* uncompressed octets read over the whole walk */
	size_t sniff_bytes;      /* octets of each entry shown to libmagic */
};

/* 3 levels, 1000 entries, 8 MiB, 64 MiB, 64 KiB. */
extern const struct sniff_limits sniff_default_limits;

enum sniff_status {
	SNIFF_OK,
	SNIFF_NOT_ARCHIVE, /* libarchive does not know this as an archive */
	SNIFF_ENCRYPTED,
	SNIFF_TOO_DEEP,
	SNIFF_TOO_MANY,
	SNIFF_TOO_BIG,
	SNIFF_CORRUPT,
};

struct sniff_entry {
	unsigned depth;        /* 1: an entry of the archive given */
	const char *container; /* the entry that holds this archive ("" at depth 1) */
	const char *name;      /* UTF-8 when libarchive can tell, else as stored */
	const char *type;      /* sniffed MIME type; "" for directories and unread entries */
	uint64_t size;         /* size as declared in the archive (0 if unknown) */
	bool dir;
	bool encrypted;
};

typedef void sniff_entry_cb(void *arg, const struct sniff_entry *e);

struct sniff_result {
	enum sniff_status status; /* the first problem met, or OK */
	char reason[160];         /* for the log and %(reason)% */
	char format[32];          /* the outer archive's format, e.g. "ZIP 2.0 (deflation)" */
	unsigned entries;
	uint64_t bytes;           /* uncompressed octets read */
};

/*
 * Load the magic database (NULL: SNIFF_MAGIC_DEFAULT).  NULL on failure
 * with the reason in err.
 */
struct sniff *sniff_open(const char *magic_file, char *err, size_t errsz);
void sniff_close(struct sniff *sn);

/*
 * The MIME type of buf[0..len) (e.g. "application/x-dosexec").  At most
 * sniff_default_limits.sniff_bytes are looked at.  Returns 0, or -1 with
 * "application/octet-stream" in type when libmagic fails.
 */
int sniff_type(struct sniff *sn, const void *buf, size_t len, char *type, size_t typesz);

/* Whether a sniffed type is one sniff_archive() should open. */
bool sniff_is_archive(const char *type);

/*
 * Walk the archive buf[0..len) (limits NULL: the defaults), calling cb for
 * every entry, parents before their contents.  Returns res->status.
 */
enum sniff_status sniff_archive(struct sniff *sn, const void *buf, size_t len,
    const struct sniff_limits *lim, sniff_entry_cb *cb, void *arg, struct sniff_result *res);

const char *sniff_status_name(enum sniff_status s);

#endif
