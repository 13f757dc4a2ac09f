/* ftune/ftune.h: the umbrella header of libftune. */
#ifndef FTUNE_FTUNE_H
#define FTUNE_FTUNE_H

#define FTUNE_VERSION "0.1.0"

#include "ftune/base.h"
#include "ftune/comm.h"
#include "ftune/json.h"

#include "ftune/safetensors.h"
#include "ftune/hf.h"
#include "ftune/config.h"
#include "ftune/tensor.h"
#include "ftune/model.h"
#include "ftune/optim.h"
#include "ftune/tok.h"
#include "ftune/tpl.h"
#include "ftune/data.h"
#include "ftune/ckpt.h"
#include "ftune/train.h"
#include "ftune/gen.h"
#include "ftune/store.h"
#include "ftune/runs.h"
#include "ftune/server.h"

#endif
