/* testhooks: the TestingService (AdvanceClock, SetFault, FlushUsage), compiled only into the
 * patd-testclock binary (PATD_TEST_CLOCK). A normal patd does not contain
 * this file, so its clock cannot be moved and no fault injected by anyone. */
#ifndef PAT_TESTHOOKS_H
#define PAT_TESTHOOKS_H

#include <protobuf-c/protobuf-c.h>

#include "pat/v1/testing.pb-c.h"

/* The service instance; its methods need the platform key. */
ProtobufCService *testhooks_service(void);

#endif
