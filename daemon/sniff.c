/*
 * sniff - libmagic types and a bounded libarchive walk.  See sniff.h.
 */
#include <archive.h>
#include <archive_entry.h>
#include <magic.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sniff.h"
#include "util.h"

const struct sniff_limits sniff_default_limits = {
	.max_depth = 3,
	.max_entries = 1000,
	.max_entry_size = 8u << 20,
	.max_total = 64u << 20,
	.sniff_bytes = 64u << 10,
};

typedef int filter_fn(struct archive *);

/*
 * Decompression filters we may enable.  Each is probed once: libarchive
 * answers ARCHIVE_WARN when it would run an external program, and those
 * are left out (no fork/exec from a worker).
 */
static filter_fn *const filters[] = {
	archive_read_support_filter_gzip,
	archive_read_support_filter_bzip2,
	archive_read_support_filter_xz,
	archive_read_support_filter_lzma,
	archive_read_support_filter_zstd,
	archive_read_support_filter_lz4,
	archive_read_support_filter_lzip,
	archive_read_support_filter_compress,
	archive_read_support_filter_uu,
	archive_read_support_filter_rpm,
};

/* No mtree (it reads files named in it from the local disk), no warc. */
static filter_fn *const formats[] = {
	archive_read_support_format_zip,
	archive_read_support_format_tar,
	archive_read_support_format_7zip,
	archive_read_support_format_rar,
	archive_read_support_format_rar5,
	archive_read_support_format_cab,
	archive_read_support_format_iso9660,
	archive_read_support_format_cpio,
	archive_read_support_format_ar,
	archive_read_support_format_lha,
	archive_read_support_format_xar,
	archive_read_support_format_raw, /* a single compressed file */
};

struct sniff {
	magic_t magic;
	bool filter_ok[ARRAY_SIZE(filters)];
	bool format_ok[ARRAY_SIZE(formats)];
};

static const char *const status_names[] = {
	[SNIFF_OK] = "ok",
	[SNIFF_NOT_ARCHIVE] = "not-archive",
	[SNIFF_ENCRYPTED] = "encrypted",
	[SNIFF_TOO_DEEP] = "too-deep",
	[SNIFF_TOO_MANY] = "too-many-entries",
	[SNIFF_TOO_BIG] = "too-big",
	[SNIFF_CORRUPT] = "corrupt",
};

const char *
sniff_status_name(enum sniff_status s)
{
	return (unsigned)s < ARRAY_SIZE(status_names) ? status_names[s] : "?";
}

struct sniff *
sniff_open(const char *magic_file, char *err, size_t errsz)
{
	struct sniff *sn = xcalloc(1, sizeof(*sn));
	/* lower than libmagic's defaults: hostile input, one call per part */
	static const struct {
		int param;
		size_t value;
	} params[] = {
		{ MAGIC_PARAM_INDIR_MAX, 8 },
		{ MAGIC_PARAM_NAME_MAX, 20 },
		{ MAGIC_PARAM_ELF_PHNUM_MAX, 64 },
		{ MAGIC_PARAM_ELF_SHNUM_MAX, 256 },
		{ MAGIC_PARAM_ELF_NOTES_MAX, 64 },
		{ MAGIC_PARAM_REGEX_MAX, 4096 },
		{ MAGIC_PARAM_ENCODING_MAX, 16384 },
	};

	if (magic_file == NULL)
		magic_file = SNIFF_MAGIC_DEFAULT;
	/* MIME type only; no decompression: archives are libarchive's job */
	sn->magic = magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR | MAGIC_NO_CHECK_COMPRESS);
	if (sn->magic == NULL) {
		snprintf(err, errsz, "libmagic: cannot initialise");
		free(sn);
		return NULL;
	}
	if (magic_load(sn->magic, magic_file) != 0) {
		snprintf(err, errsz, "%s: %s", magic_file,
		    magic_error(sn->magic) ? magic_error(sn->magic) : "cannot load");
		magic_close(sn->magic);
		free(sn);
		return NULL;
	}
	for (size_t i = 0; i < ARRAY_SIZE(params); i++)
		(void)magic_setparam(sn->magic, params[i].param, &params[i].value);
	size_t bytes = sniff_default_limits.sniff_bytes;
	(void)magic_setparam(sn->magic, MAGIC_PARAM_BYTES_MAX, &bytes);

	struct archive *a = archive_read_new();
	if (a == NULL)
		fatal("out of memory");
	for (size_t i = 0; i < ARRAY_SIZE(filters); i++)
		sn->filter_ok[i] = filters[i](a) == ARCHIVE_OK;
	for (size_t i = 0; i < ARRAY_SIZE(formats); i++)
		sn->format_ok[i] = formats[i](a) == ARCHIVE_OK;
	archive_read_free(a);
	return sn;
}

void
sniff_close(struct sniff *sn)
{
	if (sn == NULL)
		return;
	magic_close(sn->magic);
	free(sn);
}

int
sniff_type(struct sniff *sn, const void *buf, size_t len, char *type, size_t typesz)
{
	const char *t;

	if (len > sniff_default_limits.sniff_bytes)
		len = sniff_default_limits.sniff_bytes;
	t = magic_buffer(sn->magic, buf, len);
	if (t == NULL || strlcpy_checked(type, t, typesz) < 0) {
		(void)strlcpy_checked(type, "application/octet-stream", typesz);
		return -1;
	}
	return 0;
}

bool
sniff_is_archive(const char *type)
{
	static const char *const exact[] = {
		"application/zip", "application/x-zip-compressed", "application/java-archive",
		"application/epub+zip", "application/vnd.android.package-archive",
		"application/x-tar", "application/x-gtar", "application/x-ustar",
		"application/gzip", "application/x-gzip", "application/x-bzip2",
		"application/x-xz", "application/x-lzma", "application/zstd",
		"application/x-zstd", "application/x-lz4", "application/x-lzip",
		"application/x-compress", "application/x-7z-compressed", "application/x-rar",
		"application/vnd.rar", "application/x-rar-compressed",
		"application/vnd.ms-cab-compressed", "application/x-iso9660-image",
		"application/x-cpio", "application/x-archive", "application/x-debian-package",
		"application/x-lha", "application/x-lzh-compressed", "application/x-xar",
		"application/x-rpm",
	};
	/* zip containers: office documents can carry embedded executables */
	static const char *const prefix[] = {
		"application/vnd.openxmlformats-officedocument.",
		"application/vnd.oasis.opendocument.",
		"application/vnd.ms-excel.sheet.macroenabled",
		"application/vnd.ms-word.document.macroenabled",
		"application/vnd.ms-powerpoint.presentation.macroenabled",
	};

	for (size_t i = 0; i < ARRAY_SIZE(exact); i++)
		if (strcasecmp(type, exact[i]) == 0)
			return true;
	for (size_t i = 0; i < ARRAY_SIZE(prefix); i++)
		if (strncasecmp(type, prefix[i], strlen(prefix[i])) == 0)
			return true;
	return false;
}

struct walker {
	struct sniff *sn;
	const struct sniff_limits *lim;
	sniff_entry_cb *cb;
	void *arg;
	struct sniff_result *res;
	bool stop;           /* a global bound was hit: no more reading */
	unsigned char *head; /* lim->sniff_bytes, reused at every level */
};

static void problem(struct walker *w, enum sniff_status st, const char *fmt, ...)
    PRINTF_LIKE(3, 4);

static void
problem(struct walker *w, enum sniff_status st, const char *fmt, ...)
{
	va_list ap;

	if (w->res->status != SNIFF_OK)
		return; /* the first problem is the one reported */
	w->res->status = st;
	va_start(ap, fmt);
	vsnprintf(w->res->reason, sizeof(w->res->reason), fmt, ap);
	va_end(ap);
}

/*
 * Read up to want octets of the current entry into buf, against the
 * budget.  Returns the count, or -1 on a read error (the archive's message
 * is then in archive_error_string), -2 when the budget ran out.
 */
static ssize_t
read_some(struct walker *w, struct archive *a, unsigned char *buf, size_t want)
{
	size_t got = 0;

	while (got < want) {
		/* never more than one octet past the budget, whatever the format */
		uint64_t left = w->lim->max_total - w->res->bytes + 1;
		size_t ask = want - got < left ? want - got : (size_t)left;
		la_ssize_t r = archive_read_data(a, buf + got, ask);

		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
		w->res->bytes += (uint64_t)r;
		if (w->res->bytes > w->lim->max_total) {
			problem(w, SNIFF_TOO_BIG, "more than %llu octets uncompressed",
			    (unsigned long long)w->lim->max_total);
			w->stop = true;
			return -2;
		}
	}
	return (ssize_t)got;
}

/*
 * The rest of the current entry is not needed.  Zip skips by the central
 * directory without inflating; other formats would decompress to skip, so
 * that is done here against the budget.
 */
static int
drain(struct walker *w, struct archive *a)
{
	if ((archive_format(a) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_ZIP)
		return archive_read_data_skip(a) == ARCHIVE_OK ? 0 : -1;
	for (;;) {
		ssize_t r = read_some(w, a, w->head, w->lim->sniff_bytes);

		if (r <= 0)
			return (int)(r < 0 ? r : 0);
	}
}

static void walk(struct walker *w, const void *buf, size_t len, unsigned depth,
    const char *container);

/* A nested archive: read it whole (bounded) and walk it. */
static void
nested(struct walker *w, struct archive *a, size_t headlen, unsigned depth, const char *name)
{
	uint64_t max = w->lim->max_entry_size;
	size_t cap = headlen < 65536 ? 65536 : headlen, len = headlen;
	unsigned char *buf;

	if (cap > max)
		cap = (size_t)max;
	if (headlen > max) {
		problem(w, SNIFF_TOO_BIG, "%s: nested archive larger than %llu octets", name,
		    (unsigned long long)max);
		(void)drain(w, a);
		return;
	}
	buf = xmalloc(cap);
	memcpy(buf, w->head, headlen);
	for (;;) {
		ssize_t r;

		if (len == cap) {
			if (cap >= max) {
				problem(w, SNIFF_TOO_BIG, "%s: nested archive larger than %llu octets",
				    name, (unsigned long long)max);
				(void)drain(w, a);
				free(buf);
				return;
			}
			cap = cap * 2 > max ? (size_t)max : cap * 2;
			buf = xrealloc(buf, cap);
		}
		r = read_some(w, a, buf + len, cap - len);
		if (r < 0) {
			if (r == -1)
				problem(w, SNIFF_CORRUPT, "%s: %s", name,
				    archive_error_string(a) ? archive_error_string(a) : "read error");
			free(buf);
			return;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	walk(w, buf, len, depth + 1, name);
	free(buf);
}

static void
walk(struct walker *w, const void *buf, size_t len, unsigned depth, const char *container)
{
	struct archive *a = archive_read_new();
	struct archive_entry *ent;
	unsigned headers = 0, retries = 0;
	const char *where = depth == 1 ? "archive" : container;

	if (a == NULL)
		fatal("out of memory");
	for (size_t i = 0; i < ARRAY_SIZE(filters); i++)
		if (w->sn->filter_ok[i])
			(void)filters[i](a);
	for (size_t i = 0; i < ARRAY_SIZE(formats); i++)
		if (w->sn->format_ok[i])
			(void)formats[i](a);
	if (archive_read_open_memory(a, buf, len) != ARCHIVE_OK) {
		const char *e = archive_error_string(a) ? archive_error_string(a) : "cannot open";

		/* the format is chosen at open: no bidder took it */
		if (depth == 1 && strstr(e, "Unrecognized archive format"))
			problem(w, SNIFF_NOT_ARCHIVE, "%s", e);
		else
			problem(w, SNIFF_CORRUPT, "%s: %s", where, e);
		archive_read_free(a);
		return;
	}
	while (!w->stop) {
		char name[SNIFF_NAME_MAX], type[SNIFF_TYPE_MAX];
		struct sniff_entry se;
		const char *n;
		ssize_t got;
		int r = archive_read_next_header(a, &ent);

		if (r == ARCHIVE_EOF)
			break;
		if (r == ARCHIVE_RETRY && ++retries < 4)
			continue;
		if (r < ARCHIVE_WARN || r == ARCHIVE_RETRY) {
			if (archive_read_has_encrypted_entries(a) > 0)
				problem(w, SNIFF_ENCRYPTED, "%s: encrypted", where);
			else if (headers == 0 && depth == 1)
				problem(w, SNIFF_NOT_ARCHIVE, "%s", archive_error_string(a) ?
				    archive_error_string(a) : "not an archive");
			else
				problem(w, SNIFF_CORRUPT, "%s: %s", where, archive_error_string(a) ?
				    archive_error_string(a) : "corrupt");
			break;
		}
		/* "raw" without a decompression filter: just octets, no archive */
		if (archive_format(a) == ARCHIVE_FORMAT_RAW && archive_filter_count(a) <= 1) {
			if (depth == 1)
				problem(w, SNIFF_NOT_ARCHIVE, "not an archive");
			else
				problem(w, SNIFF_CORRUPT, "%s: not readable as an archive", where);
			break;
		}
		if (headers++ == 0 && depth == 1 && archive_format_name(a))
			(void)strlcpy_checked(w->res->format, archive_format_name(a),
			    sizeof(w->res->format));
		if (++w->res->entries > w->lim->max_entries) {
			problem(w, SNIFF_TOO_MANY, "more than %u entries", w->lim->max_entries);
			w->stop = true;
			break;
		}

		n = archive_entry_pathname_utf8(ent);
		if (n == NULL)
			n = archive_entry_pathname(ent);
		if (n == NULL)
			n = "";
		if (strlcpy_checked(name, n, sizeof(name)) < 0) {
			/* cut at a character boundary */
			size_t k = sizeof(name) - 1;

			while (k > 0 && ((unsigned char)name[k] & 0xc0) == 0x80)
				k--;
			name[k] = '\0';
		}
		memset(&se, 0, sizeof(se));
		se.depth = depth;
		se.container = depth == 1 ? "" : container;
		se.name = name;
		se.type = "";
		se.size = archive_entry_size_is_set(ent) && archive_entry_size(ent) > 0 ?
		    (uint64_t)archive_entry_size(ent) : 0;

		if (archive_entry_filetype(ent) != AE_IFREG) {
			se.dir = archive_entry_filetype(ent) == AE_IFDIR;
			w->cb(w->arg, &se);
			continue; /* no data */
		}
		if (archive_entry_is_encrypted(ent)) {
			se.encrypted = true;
			problem(w, SNIFF_ENCRYPTED, "%s: %s is encrypted", where, name);
			w->cb(w->arg, &se);
			if (drain(w, a) < 0 && !w->stop)
				break;
			continue;
		}
		got = read_some(w, a, w->head, w->lim->sniff_bytes);
		if (got < 0) {
			if (got == -1) {
				if (archive_entry_is_data_encrypted(ent) ||
				    archive_read_has_encrypted_entries(a) > 0) {
					se.encrypted = true;
					problem(w, SNIFF_ENCRYPTED, "%s: %s is encrypted", where, name);
				} else {
					problem(w, SNIFF_CORRUPT, "%s: %s: %s", where, name,
					    archive_error_string(a) ? archive_error_string(a) :
					    "read error");
				}
			}
			w->cb(w->arg, &se);
			break;
		}
		sniff_type(w->sn, w->head, (size_t)got, type, sizeof(type));
		se.type = type;
		w->cb(w->arg, &se);
		if (!sniff_is_archive(type)) {
			if (drain(w, a) < 0 && !w->stop) {
				problem(w, SNIFF_CORRUPT, "%s: %s: %s", where, name,
				    archive_error_string(a) ? archive_error_string(a) : "read error");
				break;
			}
		} else if (depth >= w->lim->max_depth) {
			problem(w, SNIFF_TOO_DEEP, "%s: archive nested deeper than %u levels", name,
			    w->lim->max_depth);
			if (drain(w, a) < 0)
				break;
		} else {
			nested(w, a, (size_t)got, depth, name);
		}
	}
	archive_read_free(a);
}

enum sniff_status
sniff_archive(struct sniff *sn, const void *buf, size_t len, const struct sniff_limits *lim,
    sniff_entry_cb *cb, void *arg, struct sniff_result *res)
{
	struct walker w;
	struct sniff_limits l = lim ? *lim : sniff_default_limits;

	memset(res, 0, sizeof(*res));
	/* a zero read size would leave entries to libarchive's unbounded skip */
	if (l.sniff_bytes < 512)
		l.sniff_bytes = 512;
	if (l.sniff_bytes > sniff_default_limits.sniff_bytes)
		l.sniff_bytes = sniff_default_limits.sniff_bytes;
	if (l.max_depth < 1)
		l.max_depth = 1;
	w.sn = sn;
	w.lim = &l;
	w.cb = cb;
	w.arg = arg;
	w.res = res;
	w.stop = false;
	w.head = xmalloc(l.sniff_bytes);
	walk(&w, buf, len, 1, "");
	free(w.head);
	return res->status;
}
