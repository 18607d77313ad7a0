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

/* The CAs that client certificates are verified against: tls-client-ca,
 * or GIO's default database (the system's trust store) when it is not
 * set. Either is wrapped, so that GIO's GnuTLS backend, which copies a
 * GnuTLS database's whole trust list into every connection (3.7 MiB and
 * 9 ms per connection for the system's 144 CAs, measured), only asks it
 * to verify the certificates clients send. */
GTlsDatabase    *sb_tls_load_client_ca   (const SbTlsConfig  *config,
                                          GError            **error);

G_END_DECLS
