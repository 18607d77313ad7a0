/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Each code maps to io.github.Sockbridge1.Error.<Name> on the bus. */
typedef enum {
  SB_ERROR_FAILED,
  SB_ERROR_ADDRESS_IN_USE,
  SB_ERROR_PERMISSION_DENIED,
  SB_ERROR_INVALID_ARGUMENT,
  SB_ERROR_NOT_FOUND,
  SB_ERROR_LIMIT_EXCEEDED,
} SbError;

#define SB_ERROR (sb_error_quark ())
GQuark sb_error_quark (void);

G_END_DECLS
