#!/bin/sh
# The built-in demo (make demo). Filled in as the training issues land.
set -e
./build/ftune version
