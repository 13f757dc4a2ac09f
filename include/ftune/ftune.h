/* ftune/ftune.h: the umbrella header of libftune. */
#ifndef FTUNE_FTUNE_H
#define FTUNE_FTUNE_H

#define FTUNE_VERSION "0.1.0"

#include "ftune/base.h"
#include "ftune/json.h"

#endif
