#ifndef CMULTIPACK_STAMP_H
#define CMULTIPACK_STAMP_H

/// `version=<v>\ncommit=<sha>\n` when `multipack package` linked a stamp in; "" otherwise.
const char *multipack_stamp_text(void);

#endif
