using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace VolumeBackup.Api.Errors;

/// <summary>
/// Renders every ProblemDetails in Cinder's fault shape, <c>{"itemNotFound": {"code": 404, "message": "..."}}</c>,
/// so OpenStack clients show the message. ProblemDetails stays the model inside the service.
/// </summary>
public sealed class CinderProblemDetailsWriter : IProblemDetailsWriter
{
    public bool CanWrite(ProblemDetailsContext context) => true;

    public ValueTask WriteAsync(ProblemDetailsContext context)
    {
        var problem = context.ProblemDetails;
        var code = problem.Status ?? context.HttpContext.Response.StatusCode;
        var body = new Dictionary<string, object>
        {
            [FaultName(code)] = new CinderFault(code, Message(context, code)),
        };
        context.HttpContext.Response.ContentType = "application/json";
        return new ValueTask(context.HttpContext.Response.WriteAsJsonAsync(body, JsonSerializerOptions.Web));
    }

    static string Message(ProblemDetailsContext context, int code)
    {
        if (context.Exception is BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge })
            return Validation.RequestBodyLimit.Message;                     // Kestrel's own words name its option, not Cinder's
        if (context.Exception is BadHttpRequestException bad)
            return bad.InnerException is JsonException ? "Malformed request body" : bad.Message;
        if (context.ProblemDetails is HttpValidationProblemDetails validation && validation.Errors.Count > 0)
            return string.Join(" ", validation.Errors.SelectMany(e => e.Value));
        if (!string.IsNullOrEmpty(context.ProblemDetails.Detail)) return context.ProblemDetails.Detail;
        if (code >= 500) return "The server has either erred or is incapable of performing the requested operation.";
        return context.ProblemDetails.Title ?? Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(code);
    }

    /// <summary>Cinder's fault names by status (cinder/api/openstack/wsgi.py).</summary>
    static string FaultName(int code) => code switch
    {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "badMethod",
        406 => "notAcceptable",
        409 => "conflictingRequest",
        413 or 429 => "overLimit",
        415 => "badMediaType",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "computeFault",
    };

    sealed record CinderFault(int Code, string Message);
}

/// <summary>Shortcuts for the errors handlers return; each becomes a ProblemDetails the writer renders.</summary>
public static class CinderErrors
{
    public static ProblemHttpResult BadRequest(string message) => TypedResults.Problem(message, statusCode: 400);
    public static ProblemHttpResult NotFound(string message) => TypedResults.Problem(message, statusCode: 404);
    public static ProblemHttpResult Forbidden(string message) => TypedResults.Problem(message, statusCode: 403);
    public static ProblemHttpResult Conflict(string message) => TypedResults.Problem(message, statusCode: 409);
    public static ProblemHttpResult OverLimit(string message) => TypedResults.Problem(message, statusCode: 413);
    public static ProblemHttpResult ServerError(string message) => TypedResults.Problem(message, statusCode: 500);
}
