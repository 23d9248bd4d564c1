using Microsoft.AspNetCore.Http.Features;
using VolumeBackup.Api.Errors;

namespace VolumeBackup.Api.Validation;

/// <summary>
/// Cinder's request size limit (oslo.middleware sizelimit, max_request_body_size), here 1 MiB: a body declared larger is
/// refused with 413 before authentication or routing, whatever the route; a body without a length (chunked) is cut off by the
/// server once it passes the limit while being read, which the error path renders as the same 413.
/// </summary>
public static class RequestBodyLimit
{
    public const long MaxBytes = 1024 * 1024;

    public static string Message => $"Request is too large. Larger than max_request_body_size ({MaxBytes}).";

    public static IApplicationBuilder UseRequestBodyLimit(this IApplicationBuilder app) => app.Use(async (http, next) =>
    {
        if (http.Request.ContentLength > MaxBytes)
        {
            http.Response.Headers.Connection = "close";               // the unread body must not be taken for the next request
            await CinderErrors.OverLimit(Message).ExecuteAsync(http);
            return;
        }
        // Kestrel enforces this as the body is read (and throws a 413 BadHttpRequestException); the test server has no such feature.
        if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit) limit.MaxRequestBodySize = MaxBytes;
        await next(http);
    });
}
