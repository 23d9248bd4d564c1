using System.Globalization;
using System.Linq.Expressions;
using System.Numerics;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Query;
using VolumeBackup.Api.Errors;
using VolumeBackup.Api.Versions;

namespace VolumeBackup.Api.Cinder;

/// <summary>The columns a listing sorts by, under the names Cinder's clients send, and the id that breaks the last tie.</summary>
public sealed class SortKeys<T>(Expression<Func<T, Guid>> id)
{
    readonly Dictionary<string, SortKey<T>> keys = [];

    internal SortKey<T> Id { get; } = new(id, Microversion.Min);

    public SortKeys<T> Add<TKey>(string name, Expression<Func<T, TKey>> column, Microversion? since = null)
    {
        keys[name] = new SortKey<T>(column, since ?? Microversion.Min);
        return this;
    }

    internal SortKey<T>? Find(string name, Microversion version) => keys.TryGetValue(name, out var key) && version >= key.Since ? key : null;
}

internal sealed class SortKey<T>(LambdaExpression column, Microversion since)
{
    public LambdaExpression Column { get; } = column;
    public Microversion Since { get; } = since;
    public Func<T, object?> Read { get; } = Expression.Lambda<Func<T, object?>>(Expression.Convert(column.Body, typeof(object)), column.Parameters).Compile();
}

/// <summary>
/// Cinder's listing grammar, done in SQL: sort (<c>key[:dir],...</c> or sort_key/sort_dir lists, descending unless asked,
/// created_at desc by default, id breaking the last tie), limit (at most osapi_max_limit), offset and marker, a
/// <c>{collection}_links</c> next link whenever a page is full (as Cinder: so a last page that is exactly full links to an
/// empty one, which Tempest checks), and <c>count</c> from 3.45 when <c>with_count</c> is asked.
/// </summary>
public static class Listing
{
    const int MaxLimit = 1000;                                          // Cinder's osapi_max_limit

    /// <summary>One page of <paramref name="rows"/> (already filtered and scoped to what the caller may see), rendered by <paramref name="view"/>.</summary>
    /// <param name="path">The collection's path under the project, e.g. <c>backups/detail</c>; its first segment names the list.</param>
    public static async Task<Results<Ok<Dictionary<string, object>>, ProblemHttpResult>> PageAsync<T>(
        IQueryable<T> rows, SortKeys<T> keys, Func<T, object> view, string path, string projectId, HttpContext http, CancellationToken ct)
    {
        var q = http.Request.Query;
        var version = Microversion.Of(http);
        var sorts = q["sort"] is [{ } sortText] ? sortText.Split(',')
            : q["sort_key"] is [{ } keyText] ? keyText.Split(',').Zip((q["sort_dir"] is [{ } dirText] ? dirText.Split(',') : []).Concat(Enumerable.Repeat("desc", 64)), (k, d) => $"{k}:{d}").ToArray()
            : ["created_at:desc"];
        List<(SortKey<T> Key, bool Descending)> order = [];
        foreach (var sort in sorts)
        {
            var parts = sort.Split(':');
            var name = parts[0].Trim();
            if (parts.Length > 2 || parts.Length == 2 && parts[1].Trim() is not ("asc" or "desc")) return CinderErrors.BadRequest($"Invalid sort direction: {sort}");
            if (keys.Find(name, version) is not { } key) return CinderErrors.BadRequest($"Invalid input received: Invalid sort key {name}.");
            // A key repeated orders nothing more; kept, thousands of them would nest the paging expression thousands deep.
            if (order.All(o => o.Key != key)) order.Add((key, parts.Length < 2 || parts[1].Trim() == "desc"));
        }
        order.Add((keys.Id, false));
        var limit = MaxLimit;
        if (q["limit"] is [var limitText])
        {
            // Python's int(): any size and surrounding spaces, so a huge limit is clamped as Cinder clamps it, not refused.
            if (!BigInteger.TryParse(limitText?.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var asked))
                return CinderErrors.BadRequest("limit param must be an integer");
            if (asked < 0) return CinderErrors.BadRequest("limit param must be positive");
            limit = (int)BigInteger.Min(asked, MaxLimit);
        }
        var offset = 0;
        if (q["offset"] is [var offsetText] && (!int.TryParse(offsetText, out offset) || offset < 0))
            return CinderErrors.BadRequest("offset param must be positive");

        var from = rows;
        if (q["marker"] is [var marker])
        {
            // Keyset paging: the rows after the marker row's values, so the database reads from the marker on, not from the start.
            if (!Wire.TryParseId(marker, out var markerId) || await ValuesAsync(rows, keys.Id, order, markerId, ct) is not { } at)
                return CinderErrors.NotFound($"Marker {marker} could not be found.");
            from = rows.Where(After(order, at));
        }
        var page = await Sorted(from, order).Skip(offset).Take(limit).ToListAsync(ct);

        var list = path.Split('/')[0];
        var result = new Dictionary<string, object> { [list] = page.Select(view).ToList() };
        var baseUrl = Wire.BaseUrl(http.Request);
        if (page.Count > 0 && page.Count == limit)
        {
            var next = q.Where(p => p.Key != "marker").ToDictionary(p => p.Key, p => p.Value.ToString());
            next["marker"] = keys.Id.Read(page[^1])!.ToString()!;
            var query = string.Join('&', next.Select(p => $"{Uri.EscapeDataString(p.Key)}={Uri.EscapeDataString(p.Value)}"));
            result[$"{list}_links"] = new[] { new Link($"{baseUrl}/v3/{projectId}/{path}?{query}", "next") };
        }
        if (version >= Microversion.CountInfo && Wire.Flag(q, "with_count")) result["count"] = await rows.CountAsync(ct);
        return TypedResults.Ok(result);
    }

    static IQueryable<T> Sorted<T>(IQueryable<T> rows, List<(SortKey<T> Key, bool Descending)> order)
    {
        var expression = rows.Expression;
        for (var i = 0; i < order.Count; i++)
        {
            var (key, descending) = order[i];
            var method = (i == 0 ? "OrderBy" : "ThenBy") + (descending ? "Descending" : "");
            expression = Expression.Call(typeof(Queryable), method, [typeof(T), key.Column.ReturnType], expression, Expression.Quote(key.Column));
        }
        return rows.Provider.CreateQuery<T>(expression);
    }

    /// <summary>The marker row's sort values, read in SQL without loading the row; null when no visible row has that id.</summary>
    static async Task<object?[]?> ValuesAsync<T>(
        IQueryable<T> rows, SortKey<T> idKey, List<(SortKey<T> Key, bool Descending)> order, Guid id, CancellationToken ct)
    {
        var row = Expression.Parameter(typeof(T), "row");
        var isMarker = Expression.Lambda<Func<T, bool>>(Expression.Equal(On(idKey.Column, row), Value(id, typeof(Guid))), row);
        var values = Expression.Lambda<Func<T, object?[]>>(
            Expression.NewArrayInit(typeof(object), order.Select(o => Expression.Convert(On(o.Key.Column, row), typeof(object)))), row);
        return await rows.Where(isMarker).Select(values).FirstOrDefaultAsync(ct);
    }

    /// <summary>
    /// Rows strictly after <paramref name="values"/> in <paramref name="order"/>: k1 after v1, or k1 = v1 and (k2 after v2, or ...).
    /// "After" follows PostgreSQL's default null placement, as the ORDER BY does: NULLS LAST ascending, NULLS FIRST descending.
    /// </summary>
    static Expression<Func<T, bool>> After<T>(List<(SortKey<T> Key, bool Descending)> order, object?[] values)
    {
        var row = Expression.Parameter(typeof(T), "row");
        Expression? after = null;
        for (var i = order.Count - 1; i >= 0; i--)
        {
            var column = On(order[i].Key.Column, row);
            var value = values[i];
            var beyond = Beyond(column, value, order[i].Descending);
            after = after is null ? beyond : Expression.OrElse(beyond, Expression.AndAlso(Same(column, value), after));
        }
        return Expression.Lambda<Func<T, bool>>(after!, row);
    }

    static Expression Beyond(Expression column, object? value, bool descending)
    {
        var nullable = !column.Type.IsValueType || Nullable.GetUnderlyingType(column.Type) is not null;
        if (value is null) return descending ? Expression.NotEqual(column, Expression.Constant(null, column.Type)) : Expression.Constant(false);
        var beyond = Compare(column, Value(value, column.Type), descending ? ExpressionType.LessThan : ExpressionType.GreaterThan);
        return nullable && !descending ? Expression.OrElse(beyond, Expression.Equal(column, Expression.Constant(null, column.Type))) : beyond;
    }

    static Expression Same(Expression column, object? value) =>
        Expression.Equal(column, value is null ? Expression.Constant(null, column.Type) : Value(value, column.Type));

    static Expression Compare(Expression left, Expression right, ExpressionType op) => left.Type == typeof(string)
        ? Expression.MakeBinary(op, Expression.Call(typeof(string).GetMethod(nameof(string.Compare), [typeof(string), typeof(string)])!, left, right), Expression.Constant(0))
        : Expression.MakeBinary(op, left, right);

    /// <summary>A value the query sends as a parameter (EF Core makes a captured field a parameter, a constant a literal).</summary>
    static Expression Value(object value, Type type) => Expression.Convert(Expression.Field(Expression.Constant(new StrongBox<object>(value)), nameof(StrongBox<object>.Value)), type);

    static Expression On(LambdaExpression column, ParameterExpression row) => ReplacingExpressionVisitor.Replace(column.Parameters[0], row, column.Body);
}
