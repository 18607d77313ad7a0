/* SPDX-License-Identifier: LGPL-2.1-or-later */
#define G_LOG_DOMAIN "sockbridge"

#include "sb-tls-credentials.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "sb-error.h"

/* A setting's text: inline PEM, or what its file holds. Keys are among
 * them, so it is wiped when freed. */
typedef struct
{
  char       *data;   /* NUL-terminated; may hold NULs (PKCS#12) */
  gsize       len;
  const char *path;   /* the config's; NULL for inline text */
} SbText;

static void
sb_text_free (SbText *text)
{
  if (text == NULL)
    return;
  if (text->data != NULL)
    explicit_bzero (text->data, text->len);
  g_free (text->data);
  g_free (text);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (SbText, sb_text_free)

/* What sockbridged found in PEM text: only the labels of its blocks. */
typedef struct
{
  guint    certificates;
  guint    keys;
  gboolean encrypted;
} SbPem;

#define PEM_BEGIN "-----BEGIN "
#define PEM_DASHES "-----"

static gboolean
label_is (const char *label,
          gsize       len,
          const char *expected)
{
  return len == strlen (expected) && memcmp (label, expected, len) == 0;
}

static gboolean
label_ends_with (const char *label,
                 gsize       len,
                 const char *suffix)
{
  gsize suffix_len = strlen (suffix);

  return len >= suffix_len && memcmp (label + len - suffix_len, suffix, suffix_len) == 0;
}

static SbPem
scan_pem (const SbText *text)
{
  const char *p = text->data, *end = text->data + text->len;
  SbPem pem = { 0, };

  while ((p = memmem (p, end - p, PEM_BEGIN, strlen (PEM_BEGIN))) != NULL) {
    const char *label = p + strlen (PEM_BEGIN);
    const char *close = memmem (label, end - label, PEM_DASHES, strlen (PEM_DASHES));

    if (close == NULL)
      break;
    if (label_is (label, close - label, "CERTIFICATE"))
      pem.certificates++;
    else if (label_ends_with (label, close - label, "PRIVATE KEY")) {
      pem.keys++;
      pem.encrypted |= g_str_has_prefix (label, "ENCRYPTED ");
    }
    p = close;
  }
  /* An OpenSSL "traditional" key encrypted in place. */
  if (memmem (text->data, text->len, "Proc-Type: 4,ENCRYPTED", strlen ("Proc-Type: 4,ENCRYPTED")))
    pem.encrypted = TRUE;
  return pem;
}

static gboolean
is_pem (const SbText *text)
{
  return memmem (text->data, text->len, PEM_BEGIN, strlen (PEM_BEGIN)) != NULL;
}

/* "tls-certificate /etc/sockbridge/cert.pem", "certificate (inline PEM)". */
static char *
describe (const SbTlsConfig *config,
          SbTlsText          which)
{
  const char *text = sb_tls_config_get_text (config, which);

  if (sb_tls_is_pem (text))
    return g_strdup_printf ("%s (inline PEM)", sb_tls_config_name (config, which));
  return g_strdup_printf ("%s %s", sb_tls_config_name (config, which), text);
}

G_GNUC_PRINTF (3, 4)
static gpointer
invalid (GError    **error,
         SbError     code,
         const char *format,
         ...)
{
  va_list args;

  va_start (args, format);
  g_propagate_error (error, g_error_new_valist (SB_ERROR, code, format, args));
  va_end (args);
  return NULL;
}

static gpointer
open_error (GError    **error,
            int         saved_errno,
            const char *what)
{
  if (saved_errno == EACCES || saved_errno == EPERM)
    return invalid (error, SB_ERROR_PERMISSION_DENIED,
                    "%s: sockbridged (uid %u) may not read it: %s; make it readable by the "
                    "daemon's user (for the service: in /etc/sockbridge/, group sockbridge, "
                    "mode 0640)", what, (guint) geteuid (), g_strerror (saved_errno));
  if (saved_errno == ENOENT || saved_errno == ENOTDIR)
    return invalid (error, SB_ERROR_INVALID_ARGUMENT, "%s: no such file", what);
  return invalid (error, SB_ERROR_INVALID_ARGUMENT, "%s: cannot read it: %s",
                  what, g_strerror (saved_errno));
}

static gboolean
read_all (int    fd,
          char  *buffer,
          gsize  size,
          gsize *len)
{
  *len = 0;
  while (*len < size) {
    gssize n = read (fd, buffer + *len, size - *len);

    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return FALSE;
    if (n == 0)
      break;
    *len += (gsize) n;
  }
  return TRUE;
}

/* O_NONBLOCK: a FIFO in a file's place must not hang the daemon; it is
 * then refused as not a regular file. */
static SbText *
read_file (const SbTlsConfig  *config,
           SbTlsText           which,
           GError            **error)
{
  g_autofree char *what = describe (config, which);
  g_autoptr(SbText) text = g_new0 (SbText, 1);
  int fd = open (sb_tls_config_get_text (config, which),
                 O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  struct stat info;
  gboolean read_ok;
  int saved_errno;

  if (fd < 0)
    return open_error (error, errno, what);
  if (fstat (fd, &info) != 0) {
    saved_errno = errno;
    close (fd);
    return open_error (error, saved_errno, what);
  }
  if (!S_ISREG (info.st_mode) || info.st_size > SB_TLS_MAX_FILE_BYTES) {
    close (fd);
    if (S_ISDIR (info.st_mode))
      return invalid (error, SB_ERROR_INVALID_ARGUMENT, "%s: is a directory, not a file", what);
    if (!S_ISREG (info.st_mode))
      return invalid (error, SB_ERROR_INVALID_ARGUMENT, "%s: is not a regular file", what);
    return invalid (error, SB_ERROR_INVALID_ARGUMENT, "%s: is over %d bytes, too large for "
                    "a certificate or key", what, SB_TLS_MAX_FILE_BYTES);
  }
  text->data = g_malloc0 ((gsize) info.st_size + 1);
  read_ok = read_all (fd, text->data, (gsize) info.st_size, &text->len);
  saved_errno = errno;
  close (fd);
  if (!read_ok)
    return open_error (error, saved_errno, what);
  text->path = sb_tls_config_get_text (config, which);
  return g_steal_pointer (&text);
}

static SbText *
load_text (const SbTlsConfig  *config,
           SbTlsText           which,
           GError            **error)
{
  const char *value = sb_tls_config_get_text (config, which);
  SbText *text;

  if (!sb_tls_is_pem (value))
    return read_file (config, which, error);
  text = g_new0 (SbText, 1);
  text->data = g_strdup (value);
  text->len = strlen (value);
  return text;
}

/* ---- the certificate ------------------------------------------------------ */

static guint
chain_length (GTlsCertificate *certificate)
{
  guint n = 0;

  for (; certificate != NULL; certificate = g_tls_certificate_get_issuer (certificate))
    n++;
  return n;
}

static GTlsCertificate *
from_pkcs12 (const SbTlsConfig  *config,
             const SbText       *text,
             GError            **error)
{
  g_autofree char *what = describe (config, SB_TLS_CERTIFICATE);
  g_autoptr(GError) tls_error = NULL;
  GTlsCertificate *certificate;

  if (sb_tls_config_get_text (config, SB_TLS_PRIVATE_KEY) != NULL ||
      sb_tls_config_get_text (config, SB_TLS_CHAIN) != NULL)
    return invalid (error, SB_ERROR_INVALID_ARGUMENT,
                    "%s is PKCS#12, which holds its own key and chain: leave %s and %s empty",
                    what, sb_tls_config_name (config, SB_TLS_PRIVATE_KEY),
                    sb_tls_config_name (config, SB_TLS_CHAIN));
  certificate = g_tls_certificate_new_from_pkcs12 ((const guint8 *) text->data, text->len,
                                                   sb_tls_config_get_text (config, SB_TLS_PASSWORD),
                                                   &tls_error);
  if (certificate != NULL)
    return certificate;
  if (g_error_matches (tls_error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE_PASSWORD))
    return invalid (error, SB_ERROR_INVALID_ARGUMENT, "%s: %s does not open it",
                    what, sb_tls_config_get_text (config, SB_TLS_PASSWORD) != NULL
                          ? "the password" : "no password");
  return invalid (error, SB_ERROR_INVALID_ARGUMENT, "%s: neither PEM nor a PKCS#12 file GIO "
                  "can read: %s", what, tls_error->message);
}

/* The private key: in the certificate's PEM, or from private_key. */
static SbText *
load_key (const SbTlsConfig  *config,
          const SbPem        *certificate,
          SbPem              *key,
          GError            **error)
{
  const char *key_name = sb_tls_config_name (config, SB_TLS_PRIVATE_KEY);
  g_autofree char *what = NULL;
  g_autoptr(SbText) text = NULL;

  if (sb_tls_config_get_text (config, SB_TLS_PRIVATE_KEY) == NULL) {
    if (certificate->keys == 0)
      return invalid (error, SB_ERROR_INVALID_ARGUMENT, "no private key: %s is empty and "
                      "%s holds none", key_name, sb_tls_config_name (config, SB_TLS_CERTIFICATE));
    return g_new0 (SbText, 1);
  }
  what = describe (config, SB_TLS_PRIVATE_KEY);
  text = load_text (config, SB_TLS_PRIVATE_KEY, error);
  if (text == NULL)
    return NULL;
  *key = scan_pem (text);
  if (key->keys == 0)
    return invalid (error, SB_ERROR_INVALID_ARGUMENT,
                    "%s: holds no PEM private key (\"-----BEGIN ... PRIVATE KEY-----\")", what);
  if (certificate->keys > 0)
    return invalid (error, SB_ERROR_INVALID_ARGUMENT, "%s holds a private key too: leave %s "
                    "empty, or take the key out of it",
                    sb_tls_config_name (config, SB_TLS_CERTIFICATE), key_name);
  return g_steal_pointer (&text);
}

static SbText *
load_chain (const SbTlsConfig  *config,
            SbPem              *chain,
            GError            **error)
{
  g_autofree char *what = NULL;
  g_autoptr(SbText) text = NULL;

  if (sb_tls_config_get_text (config, SB_TLS_CHAIN) == NULL)
    return g_new0 (SbText, 1);
  what = describe (config, SB_TLS_CHAIN);
  text = load_text (config, SB_TLS_CHAIN, error);
  if (text == NULL)
    return NULL;
  *chain = scan_pem (text);
  if (chain->certificates == 0)
    return invalid (error, SB_ERROR_INVALID_ARGUMENT,
                    "%s: holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")", what);
  if (chain->keys > 0)
    return invalid (error, SB_ERROR_INVALID_ARGUMENT,
                    "%s: holds a private key; a chain is certificates only", what);
  return g_steal_pointer (&text);
}

/* GIO takes one PEM text: the certificate, its issuers in order, a key. */
static SbText *
join (const SbText *certificate,
      const SbText *chain,
      const SbText *key)
{
  SbText *all = g_new0 (SbText, 1);

  all->len = certificate->len + chain->len + key->len + 2;
  all->data = g_malloc (all->len + 1);
  g_snprintf (all->data, all->len + 1, "%s\n%s\n%s", certificate->data,
              chain->data != NULL ? chain->data : "", key->data != NULL ? key->data : "");
  all->len = strlen (all->data);
  return all;
}

static gboolean
check_pem_certificate (const SbTlsConfig  *config,
                       const SbPem        *pem,
                       GError            **error)
{
  g_autofree char *what = describe (config, SB_TLS_CERTIFICATE);

  if (sb_tls_config_get_text (config, SB_TLS_PASSWORD) != NULL) {
    invalid (error, SB_ERROR_INVALID_ARGUMENT, "%s is PEM: %s only opens a PKCS#12 file "
             "(GIO reads no encrypted PEM key); leave it empty", what,
             sb_tls_config_name (config, SB_TLS_PASSWORD));
    return FALSE;
  }
  if (pem->certificates == 0) {
    invalid (error, SB_ERROR_INVALID_ARGUMENT,
             "%s: holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")", what);
    return FALSE;
  }
  return TRUE;
}

static gboolean
check_key_count (const SbTlsConfig  *config,
                 guint               keys,
                 gboolean            encrypted,
                 GError            **error)
{
  if (keys > 1) {
    invalid (error, SB_ERROR_INVALID_ARGUMENT, "%s holds %u private keys; give one",
             sb_tls_config_name (config, SB_TLS_CERTIFICATE), keys);
    return FALSE;
  }
  if (encrypted) {
    invalid (error, SB_ERROR_INVALID_ARGUMENT, "the private key is encrypted, and GIO reads "
             "encrypted keys only from PKCS#12 files: give a PKCS#12 file and its password, "
             "or the key decrypted (openssl pkey -in KEY -out PLAIN_KEY)");
    return FALSE;
  }
  return TRUE;
}

static GTlsCertificate *
from_pem (const SbTlsConfig  *config,
          const SbText       *text,
          GError            **error)
{
  g_autofree char *what = describe (config, SB_TLS_CERTIFICATE);
  g_autoptr(SbText) key = NULL;
  g_autoptr(SbText) chain = NULL;
  g_autoptr(SbText) all = NULL;
  g_autoptr(GError) tls_error = NULL;
  g_autoptr(GTlsCertificate) certificate = NULL;
  SbPem pem = scan_pem (text), key_pem = { 0, }, chain_pem = { 0, };

  if (!check_pem_certificate (config, &pem, error) ||
      (key = load_key (config, &pem, &key_pem, error)) == NULL ||
      !check_key_count (config, pem.keys + key_pem.keys, pem.encrypted || key_pem.encrypted, error) ||
      (chain = load_chain (config, &chain_pem, error)) == NULL)
    return NULL;
  all = join (text, chain, key);
  certificate = g_tls_certificate_new_from_pem (all->data, all->len, &tls_error);
  if (certificate == NULL)
    return invalid (error, SB_ERROR_INVALID_ARGUMENT, "%s: %s", what, tls_error->message);
  /* GIO drops, silently, issuers that do not certify what comes before. */
  if (chain_length (certificate) < pem.certificates + chain_pem.certificates)
    return invalid (error, SB_ERROR_INVALID_ARGUMENT, "the certificates of %s%s%s do not form "
                    "a chain: each must be issued by the one after it, the server's own first",
                    what, chain->data != NULL ? " and " : "",
                    chain->data != NULL ? sb_tls_config_name (config, SB_TLS_CHAIN) : "");
  return g_steal_pointer (&certificate);
}

GTlsCertificate *
sb_tls_load_certificate (const SbTlsConfig  *config,
                         GError            **error)
{
  g_autoptr(SbText) text = NULL;

  g_return_val_if_fail (config != NULL, NULL);

  text = load_text (config, SB_TLS_CERTIFICATE, error);
  if (text == NULL)
    return NULL;
  if (!is_pem (text))
    return from_pkcs12 (config, text, error);
  return from_pem (config, text, error);
}

/* ---- the client CA ----------------------------------------------------------- */

/* A GTlsDatabase that hands every question to another one. GIO's GnuTLS
 * backend turns a database of its own into GnuTLS credentials for each
 * connection, which for a bundle of many CAs costs megabytes per
 * connection; a database of any other type it just asks to verify the
 * client's chain (on the main thread, when the client's certificate
 * arrives), which the wrapped database does with the trust list it built
 * once. The only cost: the server's CertificateRequest names no CA, which
 * TLS allows (a client may then send any certificate). */
#define SB_TYPE_TLS_VERIFIER (sb_tls_verifier_get_type ())
G_DECLARE_FINAL_TYPE (SbTlsVerifier, sb_tls_verifier, SB, TLS_VERIFIER, GTlsDatabase)

struct _SbTlsVerifier
{
  GTlsDatabase  parent_instance;

  GTlsDatabase *inner;
};

G_DEFINE_FINAL_TYPE (SbTlsVerifier, sb_tls_verifier, G_TYPE_TLS_DATABASE)

static GTlsCertificateFlags
verifier_verify_chain (GTlsDatabase             *database,
                       GTlsCertificate          *chain,
                       const char               *purpose,
                       GSocketConnectable       *identity,
                       GTlsInteraction          *interaction,
                       GTlsDatabaseVerifyFlags   flags,
                       GCancellable             *cancellable,
                       GError                  **error)
{
  return g_tls_database_verify_chain (SB_TLS_VERIFIER (database)->inner, chain, purpose,
                                      identity, interaction, flags, cancellable, error);
}

static char *
verifier_create_certificate_handle (GTlsDatabase    *database,
                                    GTlsCertificate *certificate)
{
  return g_tls_database_create_certificate_handle (SB_TLS_VERIFIER (database)->inner,
                                                   certificate);
}

static GTlsCertificate *
verifier_lookup_certificate_for_handle (GTlsDatabase             *database,
                                        const char               *handle,
                                        GTlsInteraction          *interaction,
                                        GTlsDatabaseLookupFlags   flags,
                                        GCancellable             *cancellable,
                                        GError                  **error)
{
  return g_tls_database_lookup_certificate_for_handle (SB_TLS_VERIFIER (database)->inner,
                                                       handle, interaction, flags,
                                                       cancellable, error);
}

static GTlsCertificate *
verifier_lookup_certificate_issuer (GTlsDatabase             *database,
                                    GTlsCertificate          *certificate,
                                    GTlsInteraction          *interaction,
                                    GTlsDatabaseLookupFlags   flags,
                                    GCancellable             *cancellable,
                                    GError                  **error)
{
  return g_tls_database_lookup_certificate_issuer (SB_TLS_VERIFIER (database)->inner,
                                                   certificate, interaction, flags,
                                                   cancellable, error);
}

static GList *
verifier_lookup_certificates_issued_by (GTlsDatabase             *database,
                                        GByteArray               *issuer_raw_dn,
                                        GTlsInteraction          *interaction,
                                        GTlsDatabaseLookupFlags   flags,
                                        GCancellable             *cancellable,
                                        GError                  **error)
{
  return g_tls_database_lookup_certificates_issued_by (SB_TLS_VERIFIER (database)->inner,
                                                       issuer_raw_dn, interaction, flags,
                                                       cancellable, error);
}

static void
sb_tls_verifier_finalize (GObject *object)
{
  g_clear_object (&SB_TLS_VERIFIER (object)->inner);
  G_OBJECT_CLASS (sb_tls_verifier_parent_class)->finalize (object);
}

static void
sb_tls_verifier_class_init (SbTlsVerifierClass *klass)
{
  GTlsDatabaseClass *database_class = G_TLS_DATABASE_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = sb_tls_verifier_finalize;
  database_class->verify_chain = verifier_verify_chain;
  database_class->create_certificate_handle = verifier_create_certificate_handle;
  database_class->lookup_certificate_for_handle = verifier_lookup_certificate_for_handle;
  database_class->lookup_certificate_issuer = verifier_lookup_certificate_issuer;
  database_class->lookup_certificates_issued_by = verifier_lookup_certificates_issued_by;
}

static void
sb_tls_verifier_init (SbTlsVerifier *self)
{
}

static GTlsDatabase *
verifier_new (GTlsDatabase *inner)
{
  SbTlsVerifier *self = g_object_new (SB_TYPE_TLS_VERIFIER, NULL);

  self->inner = inner;
  return G_TLS_DATABASE (self);
}

/* GIO's file database takes a file: inline PEM is written to a private
 * temporary one, read at once (the database builds its trust list when
 * it is made), and removed. CAs are public anyway. */
static GTlsDatabase *
database_from_text (const SbText  *text,
                    GError       **error)
{
  g_autofree char *dir = g_dir_make_tmp ("sockbridge-XXXXXX", error);
  g_autofree char *path = NULL;
  GTlsDatabase *database = NULL;

  if (dir == NULL)
    return NULL;
  path = g_build_filename (dir, "client-ca.pem", NULL);
  if (g_file_set_contents (path, text->data, text->len, error))
    database = g_tls_file_database_new (path, error);
  g_unlink (path);
  g_rmdir (dir);
  return database;
}

static GTlsDatabase *
load_client_ca_file (const SbTlsConfig  *config,
                     GError            **error)
{
  g_autofree char *what = describe (config, SB_TLS_CLIENT_CA);
  g_autoptr(SbText) text = NULL;
  g_autoptr(GError) tls_error = NULL;
  GTlsDatabase *database;

  text = load_text (config, SB_TLS_CLIENT_CA, error);
  if (text == NULL)
    return NULL;
  if (scan_pem (text).certificates == 0)
    return invalid (error, SB_ERROR_INVALID_ARGUMENT,
                    "%s: holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")", what);
  if (text->path != NULL)
    database = g_tls_file_database_new (text->path, &tls_error);
  else
    database = database_from_text (text, &tls_error);
  if (database == NULL)
    return invalid (error, SB_ERROR_INVALID_ARGUMENT, "%s: %s", what, tls_error->message);
  return database;
}

GTlsDatabase *
sb_tls_load_client_ca (const SbTlsConfig  *config,
                       GError            **error)
{
  GTlsDatabase *inner;

  g_return_val_if_fail (config != NULL, NULL);

  if (sb_tls_config_get_text (config, SB_TLS_CLIENT_CA) != NULL)
    inner = load_client_ca_file (config, error);
  else if ((inner = g_tls_backend_get_default_database (g_tls_backend_get_default ())) == NULL)
    g_set_error_literal (error, SB_ERROR, SB_ERROR_FAILED, "GIO has no default certificate "
                         "database to verify client certificates against: set tls-client-ca");
  return inner != NULL ? verifier_new (inner) : NULL;
}
