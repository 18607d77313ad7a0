/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* Entries of one allow-from option at most: each peer is checked against
 * every one. */
#define SB_MAX_ALLOW_FROM 256

/* The allow-from option: the peers a server admits, as addresses and
 * prefixes ("192.168.1.0/24", "fe80::/10", "::1"). A peer's family is the
 * one sockbridge reports: an IPv4 client of a dual-stack socket arrives as
 * ::ffff:a.b.c.d and is IPv4, matched by IPv4 entries only. */

/* The canonical text of @entry (the address as GLib prints it, then
 * "/length" unless the length covers the whole address; an entry in
 * ::ffff:0:0/96 as the IPv4 entry it stands for), or NULL and
 * SB_ERROR_INVALID_ARGUMENT naming the entry. */
char        *sb_allow_entry_canonical (const char          *entry,
                                       GError             **error);

typedef struct _SbAllowList SbAllowList;

/* @entries: canonical entries, as sb_allow_entry_canonical() returns. */
SbAllowList *sb_allow_list_new        (const char * const  *entries);
void         sb_allow_list_free       (SbAllowList         *self);
gboolean     sb_allow_list_admits     (const SbAllowList   *self,
                                       GInetAddress        *address);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (SbAllowList, sb_allow_list_free)

G_END_DECLS
