/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <gio/gio.h>

#include "sb-tls-config.h"

G_BEGIN_DECLS

/* Files named by a TLS server are read whole, and none needs to be larger. */
#define SB_TLS_MAX_FILE_BYTES (1024 * 1024)

/* The server's certificate with its private key and issuer chain, from
 * PEM (text or a file: the certificate, then private_key and chain when
 * given) or from a PKCS#12 file opened with the password. Every error is
 * SB_ERROR_INVALID_ARGUMENT (or SB_ERROR_PERMISSION_DENIED for a file the
 * daemon may not read) and names the setting and, for a file, its path;
 * none quotes a text or what a file holds. */
GTlsCertificate *sb_tls_load_certificate (const SbTlsConfig  *config,
                                          GError            **error);

/* The CAs that client certificates are verified against (tls-client-ca);
 * NULL without error when none is set. GIO reads its file again for each
 * connection: inline PEM is copied to a private temporary file, whose
 * path is set in @copy, to be removed with sb_tls_remove_copy() when the
 * server stops. */
GTlsDatabase    *sb_tls_load_client_ca   (const SbTlsConfig  *config,
                                          char              **copy,
                                          GError            **error);
/* Removes the copy and its directory; NULL is fine. */
void             sb_tls_remove_copy      (const char         *copy);

G_END_DECLS
