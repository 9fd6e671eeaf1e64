#include "CMultipackStamp.h"

// Weak, so that the strong definition `multipack package` compiles and passes to the linker wins.
// The compiler may not fold a weak definition's value into the function below.
__attribute__((weak)) const char multipack_stamp[] = "";

const char *multipack_stamp_text(void) { return multipack_stamp; }
