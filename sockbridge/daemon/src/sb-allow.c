/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-allow.h"

#include <string.h>

#include "sb-error.h"

typedef struct
{
  GSocketFamily family;
  guint8        bytes[16];   /* the first 4 for IPv4 */
  guint         length;      /* prefix length in bits */
} SbAllowEntry;

struct _SbAllowList
{
  GArray *entries;           /* SbAllowEntry */
};

static const guint8 sb_mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* An IPv4 address in its IPv6 clothes (::ffff:a.b.c.d) is IPv4. */
static void
entry_set_address (SbAllowEntry *entry,
                   GInetAddress *address)
{
  const guint8 *bytes = g_inet_address_to_bytes (address);

  memset (entry->bytes, 0, sizeof entry->bytes);
  entry->family = g_inet_address_get_family (address);
  if (entry->family == G_SOCKET_FAMILY_IPV4) {
    memcpy (entry->bytes, bytes, 4);
  } else if (memcmp (bytes, sb_mapped_prefix, sizeof sb_mapped_prefix) == 0) {
    entry->family = G_SOCKET_FAMILY_IPV4;
    memcpy (entry->bytes, bytes + 12, 4);
  } else {
    memcpy (entry->bytes, bytes, 16);
  }
}

static gboolean
prefix_equal (const guint8 *a,
              const guint8 *b,
              guint         length)
{
  guint whole = length / 8;
  guint8 mask = (guint8) (0xff00 >> (length % 8));

  return memcmp (a, b, whole) == 0 && (mask == 0 || ((a[whole] ^ b[whole]) & mask) == 0);
}

static gboolean
invalid (GError     **error,
         const char  *entry,
         const char  *why)
{
  g_set_error (error, SB_ERROR, SB_ERROR_INVALID_ARGUMENT,
               "allow-from entry '%s' %s", entry, why);
  return FALSE;
}

/* Decimal, without sign or leading zeros: "/08" is more likely a typo
 * than a prefix length. */
static gboolean
parse_length (const char *text,
              guint       max,
              guint      *length)
{
  guint64 value;

  if (text[0] == '\0' || (text[0] == '0' && text[1] != '\0') || strlen (text) > 3)
    return FALSE;
  for (const char *p = text; *p != '\0'; p++) {
    if (!g_ascii_isdigit (*p))
      return FALSE;
  }
  value = g_ascii_strtoull (text, NULL, 10);
  if (value > max)
    return FALSE;
  *length = (guint) value;
  return TRUE;
}

/* The address as GLib prints it, which is canonical ("0:0::1" is "::1"). */
static gboolean
parse_entry (const char    *text,
             SbAllowEntry  *entry,
             GError       **error)
{
  const char *slash = strchr (text, '/');
  g_autofree char *address_text = g_strndup (text, slash != NULL ? (gsize) (slash - text) : strlen (text));
  g_autoptr(GInetAddress) address = g_inet_address_new_from_string (address_text);
  gboolean mapped;
  guint bits;

  if (address == NULL)
    return invalid (error, text, "is not a numeric IPv4 or IPv6 address, nor one followed by "
                    "/ and a prefix length");
  entry_set_address (entry, address);
  mapped = entry->family != g_inet_address_get_family (address);
  bits = g_inet_address_get_native_size (address) * 8;
  entry->length = bits;
  if (slash != NULL && !parse_length (slash + 1, bits, &entry->length))
    return invalid (error, text, bits == 32 ? "must have a prefix length from 0 to 32"
                                            : "must have a prefix length from 0 to 128");
  if (mapped && entry->length < 96)
    return invalid (error, text, "reaches past the IPv4-mapped addresses ::ffff:0:0/96");
  if (mapped)
    entry->length -= 96;
  return TRUE;
}

static char *
entry_to_string (const SbAllowEntry *entry)
{
  g_autoptr(GInetAddress) address = g_inet_address_new_from_bytes (entry->bytes, entry->family);
  g_autofree char *text = g_inet_address_to_string (address);
  guint bits = entry->family == G_SOCKET_FAMILY_IPV4 ? 32 : 128;

  if (entry->length == bits)
    return g_steal_pointer (&text);
  return g_strdup_printf ("%s/%u", text, entry->length);
}

/* Bits set past the prefix are refused rather than cleared: "10.1.2.3/8"
 * is as likely a typo for /32 as a way to write 10.0.0.0/8. */
char *
sb_allow_entry_canonical (const char  *entry,
                          GError     **error)
{
  SbAllowEntry parsed;
  SbAllowEntry network;
  g_autofree char *network_text = NULL;
  g_autofree char *why = NULL;

  g_return_val_if_fail (entry != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!parse_entry (entry, &parsed, error))
    return NULL;
  network = parsed;
  memset (network.bytes, 0, sizeof network.bytes);
  memcpy (network.bytes, parsed.bytes, (parsed.length + 7) / 8);
  if (parsed.length % 8 != 0)
    network.bytes[parsed.length / 8] &= (guint8) (0xff00 >> (parsed.length % 8));
  if (memcmp (network.bytes, parsed.bytes, sizeof network.bytes) == 0)
    return entry_to_string (&parsed);
  network_text = entry_to_string (&network);
  why = g_strdup_printf ("has bits set past its prefix length; the network is %s", network_text);
  invalid (error, entry, why);
  return NULL;
}

SbAllowList *
sb_allow_list_new (const char * const *entries)
{
  SbAllowList *self = g_new0 (SbAllowList, 1);

  self->entries = g_array_new (FALSE, FALSE, sizeof (SbAllowEntry));
  for (gsize i = 0; entries != NULL && entries[i] != NULL; i++) {
    g_autoptr(GError) error = NULL;
    SbAllowEntry entry;

    if (parse_entry (entries[i], &entry, &error))
      g_array_append_val (self->entries, entry);
    else
      g_critical ("%s", error->message);
  }
  return self;
}

void
sb_allow_list_free (SbAllowList *self)
{
  if (self == NULL)
    return;
  g_array_unref (self->entries);
  g_free (self);
}

gboolean
sb_allow_list_admits (const SbAllowList *self,
                      GInetAddress      *address)
{
  SbAllowEntry peer;

  g_return_val_if_fail (self != NULL, FALSE);
  g_return_val_if_fail (G_IS_INET_ADDRESS (address), FALSE);

  entry_set_address (&peer, address);
  for (guint i = 0; i < self->entries->len; i++) {
    const SbAllowEntry *entry = &g_array_index (self->entries, SbAllowEntry, i);

    if (entry->family == peer.family && prefix_equal (entry->bytes, peer.bytes, entry->length))
      return TRUE;
  }
  return FALSE;
}
