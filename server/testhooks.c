/* testhooks: TestingService handlers for the test build. */
#include "testhooks.h"

#include "clock.h"
#include "service.h"
#include "usage.h"

static void testhooks_advance_clock(Pat__V1__TestingService_Service *service,
                                    const Pat__V1__AdvanceClockRequest *in,
                                    Pat__V1__AdvanceClockResponse_Closure done, void *cd)
{
    svc_call_t *call = cd;
    (void)service;
    if (!svc_is_platform(call)) {
        svc_fail(call, PAT_E_PLATFORM_ONLY, "AdvanceClock needs the platform key");
        done(NULL, call);
        return;
    }
    if (in->advance_ms < 0) {
        svc_fail(call, PAT_E_INVALID_FIELD, "advance_ms may not be negative");
        done(NULL, call);
        return;
    }
    Pat__V1__AdvanceClockResponse r = PAT__V1__ADVANCE_CLOCK_RESPONSE__INIT;
    r.now = clock_advance(in->advance_ms);
    done(&r, call);
}

static void testhooks_set_fault(Pat__V1__TestingService_Service *service,
                                const Pat__V1__SetFaultRequest *in,
                                Pat__V1__SetFaultResponse_Closure done, void *cd)
{
    svc_call_t *call = cd;
    (void)service;
    if (!svc_is_platform(call)) {
        svc_fail(call, PAT_E_PLATFORM_ONLY, "SetFault needs the platform key");
        done(NULL, call);
        return;
    }
    store_set_fail_writes(call->svc->store, in->fail_writes);
    store_set_decline_tries(call->svc->store, in->cold_reads);
    Pat__V1__SetFaultResponse r = PAT__V1__SET_FAULT_RESPONSE__INIT;
    done(&r, call);
}

static void testhooks_flush_usage(Pat__V1__TestingService_Service *service,
                                  const Pat__V1__FlushUsageRequest *in,
                                  Pat__V1__FlushUsageResponse_Closure done, void *cd)
{
    svc_call_t *call = cd;
    (void)service;
    (void)in;
    if (!svc_is_platform(call)) {
        svc_fail(call, PAT_E_PLATFORM_ONLY, "FlushUsage needs the platform key");
        done(NULL, call);
        return;
    }
    if (usage_flush(call->svc->usage) != 0) {
        svc_fail(call, PAT_E_STORAGE, "the usage flush failed");
        done(NULL, call);
        return;
    }
    Pat__V1__FlushUsageResponse r = PAT__V1__FLUSH_USAGE_RESPONSE__INIT;
    done(&r, call);
}

static Pat__V1__TestingService_Service testhooks_impl = PAT__V1__TESTING_SERVICE__INIT(testhooks_);

ProtobufCService *testhooks_service(void)
{
    return &testhooks_impl.base;
}
