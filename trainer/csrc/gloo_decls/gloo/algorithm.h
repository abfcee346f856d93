// See ../README.md: ProcessGroupGloo.hpp includes it but uses nothing from it.
#pragma once
#include "gloo/context.h"
